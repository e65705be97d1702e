package bench_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/bench"
	"github.com/invalidator/invalidator/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// The scenarios run end to end on small sizes; the figures themselves are
// for `invalidator bench`, not for assertions.
func requireSane(t *testing.T, r *bench.Result, scenario string, keys int64) {
	t.Helper()
	require.Equal(t, scenario, r.Scenario)
	require.Equal(t, keys, r.Keys)
	require.Positive(t, r.Seconds)
	require.Positive(t, r.KeysPerSec)
	require.Positive(t, r.RedisCPUSeconds, "redis-server did work during the scenario")
	for _, name := range []string{bench.BaselineRawUnlink, bench.BaselineDelPerKey, bench.BaselineNaiveAsynq} {
		require.Positive(t, r.Baselines[name], name)
		require.InDelta(t, r.KeysPerSec/r.Baselines[name], r.Ratios[name], 1e-9, name)
	}
}

func TestLag(t *testing.T) {
	t.Parallel()
	e := bench.Env{Redis: redistest.Client(t), PollInterval: time.Millisecond}
	r, err := bench.Lag(context.Background(), e, bench.LagOptions{Rate: 400, Duration: 500 * time.Millisecond})
	require.NoError(t, err)
	requireSane(t, r, "lag", 200)
	require.Positive(t, r.LagP50Ms)
	require.LessOrEqual(t, r.LagP50Ms, r.LagP90Ms)
	require.LessOrEqual(t, r.LagP90Ms, r.LagP99Ms)
	require.LessOrEqual(t, r.LagP99Ms, r.LagMaxMs)
	require.Positive(t, r.EnqueueP99Ms)
}

func TestThroughput(t *testing.T) {
	t.Parallel()
	e := bench.Env{Redis: redistest.Client(t)}
	r, err := bench.Throughput(context.Background(), e, bench.ThroughputOptions{Producers: 4, KeysPerCall: 7, Keys: 3000})
	require.NoError(t, err)
	requireSane(t, r, "throughput", 3000)
	r, err = bench.Throughput(context.Background(), e, bench.ThroughputOptions{Producers: 8, Keys: 2000, Coalesce: time.Millisecond})
	require.NoError(t, err)
	requireSane(t, r, "throughput", 2000)
}

func TestFamily(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	r, err := bench.Family(context.Background(), bench.Env{Redis: rdb}, bench.FamilyOptions{FamilySize: 500, Keyspace: 5000})
	require.NoError(t, err)
	requireSane(t, r, "family", 500)
	require.Positive(t, r.Baselines[bench.BaselineRawScan])
	left, err := rdb.Keys(context.Background(), "bench:*").Result()
	require.NoError(t, err)
	require.Empty(t, left, "the family scenario must clean up its keys")
}
