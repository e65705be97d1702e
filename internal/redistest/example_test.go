package redistest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/invalidator/invalidator/internal/redistest"
)

func ExampleNewDB() {
	// A test passes its own *testing.T, and TestMain calls redistest.Main
	// (see the package documentation). Examples get no *testing.T, hence
	// the stand-in.
	redistest.NewStandIn("TestExample").Run(func(t testing.TB) {
		ctx := context.Background()
		a, b := redistest.NewDB(t), redistest.NewDB(t)
		a.Client.Set(ctx, "greeting", "hello", 0)
		fmt.Println(a.Client.Get(ctx, "greeting").Val())
		fmt.Println(b.Client.Exists(ctx, "greeting").Val()) // another database
	})
	// Output:
	// hello
	// 0
}
