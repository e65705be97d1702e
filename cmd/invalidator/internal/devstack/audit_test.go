package devstack

import (
	"math"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/keyspec"
)

// The audit's source answers for the entity a key names, with what the
// readers' loader returns, and reports an id outside the run as not found.
func TestAuditSource(t *testing.T) {
	t.Parallel()
	policy, err := keyspec.Load("../../../../examples/policy.yaml")
	require.NoError(t, err)
	cfg := Config{Cache: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), Policy: policy}
	cfg.withDefaults()
	fams := make([]*keyspec.Family, len(cfg.Rows))
	for i, rk := range cfg.Rows {
		fams[i], err = policy.Family(rk.Family)
		require.NoError(t, err)
	}
	src := newSource()
	src.commit("price:7")
	src.commit("price:7")
	l, err := newAuditLoop(cfg, fams, src)
	require.NoError(t, err)
	require.Len(t, l.checks, 3)
	price := l.checks[1]
	require.Equal(t, "product_price", price.Family.Name)

	v, found, err := price.Source.Fetch(t.Context(), map[string]string{"sku": "7", "currency": "EUR"})
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "2", string(v))
	v, found, err = l.checks[0].Source.Fetch(t.Context(), map[string]string{"id": "7"})
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "0", string(v), "product 7 was never written")
	_, found, err = price.Source.Fetch(t.Context(), map[string]string{"sku": "7", "currency": "USD"})
	require.NoError(t, err)
	require.False(t, found, "the workload has no USD prices")
}

// Settings the workload refuses before it starts.
func TestWorkloadRefusesDropSettings(t *testing.T) {
	t.Parallel()
	policy, err := keyspec.Load("../../../../examples/policy.yaml")
	require.NoError(t, err)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	for _, cfg := range []Config{
		{DropInvalidations: 1.5},
		{DropInvalidations: -0.1},
		{DropInvalidations: math.NaN()},
		{AuditEvery: -time.Second},
	} {
		cfg.Queue, cfg.Cache, cfg.Policy = rdb, rdb, policy
		_, err := RunWorkload(t.Context(), cfg)
		require.Error(t, err, "%+v", cfg)
	}
}
