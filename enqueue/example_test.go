package enqueue_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
)

func Example() {
	redistest.NewStandIn("Example").Run(func(t testing.TB) {
		rdb := redistest.Client(t) // your queue Redis: any redis.UniversalClient
		policy, err := keyspec.Parse("policy.yaml", []byte(`
version: 1
classes:
  critical: {ttl: 1m, max_retry: 20, timeout: 10s}
families:
  price:
    template: "price:{sku}"
    class: critical
`))
		if err != nil {
			panic(err)
		}
		inv, err := enqueue.New(rdb, enqueue.Config{Policy: policy})
		if err != nil {
			panic(err)
		}
		ctx := context.Background()

		// After the price of SKU 42 is updated in the database:
		id, err := inv.DeleteFamily(ctx, "price", map[string]string{"sku": "42"})
		fmt.Println(id != "", err)

		// Unknown families fail at the write site, not later in a worker.
		_, err = inv.DeleteFamily(ctx, "prices", map[string]string{"sku": "42"})
		fmt.Println(err != nil)
	})
	// Output:
	// true <nil>
	// true
}
