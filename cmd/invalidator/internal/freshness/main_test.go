package freshness_test

import (
	"os"
	"testing"

	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(func() int { return redistest.Main(m) }))
}
