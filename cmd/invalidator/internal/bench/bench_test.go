package bench_test

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/bench"
	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(func() int { return redistest.Main(m) }))
}

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

// keyspaceClient returns a client of a redis-server of the test's own: the
// lag scenarios switch keyspace notifications on and back off with CONFIG
// SET, a server-wide setting that two scenarios sharing a server would
// switch off under each other.
func keyspaceClient(t *testing.T) *redis.Client {
	t.Helper()
	return redistest.StartServer(t).NewClient() // closed at cleanup
}

func TestLag(t *testing.T) {
	t.Parallel()
	e := bench.Env{Redis: keyspaceClient(t), PollInterval: time.Millisecond}
	r, err := bench.Lag(context.Background(), e, bench.LagOptions{Rate: 400, Duration: 500 * time.Millisecond})
	require.NoError(t, err)
	require.Equal(t, "lag", r.Scenario)
	require.Equal(t, int64(200), r.Keys)
	require.Positive(t, r.Seconds)
	require.Positive(t, r.RedisCPUSeconds, "redis-server did work during the scenario")
	requireOrderedLag(t, bench.LagFigures{P50Ms: r.LagP50Ms, P90Ms: r.LagP90Ms, P99Ms: r.LagP99Ms, MaxMs: r.LagMaxMs}, "lag")
	require.Positive(t, r.EnqueueP99Ms)
	// Its baselines are lags at the same rate; throughput ones would mean
	// nothing at a fixed rate.
	require.Empty(t, r.Baselines)
	require.Empty(t, r.Ratios)
	require.Len(t, r.LagBaselines, 2)
	for _, name := range []string{bench.BaselineDirectDel, bench.BaselineNaiveAsynq} {
		requireOrderedLag(t, r.LagBaselines[name], name)
	}
	queues, err := asynq.NewInspectorFromRedisClient(e.Redis).Queues()
	require.NoError(t, err)
	require.Empty(t, queues, "the scenario and its baselines delete their queues")
}

func requireOrderedLag(t *testing.T, f bench.LagFigures, name string) {
	t.Helper()
	require.Positive(t, f.P50Ms, name)
	require.LessOrEqual(t, f.P50Ms, f.P90Ms, name)
	require.LessOrEqual(t, f.P90Ms, f.P99Ms, name)
	require.LessOrEqual(t, f.P99Ms, f.MaxMs, name)
}

func TestThroughput(t *testing.T) {
	t.Parallel()
	e := bench.Env{Redis: redistest.Client(t)}
	r, err := bench.Throughput(context.Background(), e, bench.ThroughputOptions{Producers: 4, KeysPerCall: 7, Keys: 3000, Coalesce: -1})
	require.NoError(t, err)
	requireSane(t, r, "throughput", 3000)
	require.Equal(t, "off", r.Params["coalesce"])
	// 429 calls of 7 keys, one task each: the count comes from asynq's
	// counters of the bench's queue.
	require.EqualValues(t, 429, r.Tasks)
	r, err = bench.Throughput(context.Background(), e, bench.ThroughputOptions{Producers: 8, Keys: 2000})
	require.NoError(t, err)
	requireSane(t, r, "throughput", 2000)
	require.Equal(t, enqueue.DefaultCoalesceWindow.String(), r.Params["coalesce"], "coalescing is enqueue's default")
	require.True(t, r.Tasks > 0 && r.Tasks <= 2000, "coalesced calls share tasks: %d tasks for 2000 keys", r.Tasks)
	require.GreaterOrEqual(t, r.ClientCPUSeconds, 0.0)
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

// The outbox scenario runs briefly on the private PostgreSQL: every figure
// is there and consistent, and the scenario leaves no table, key or queue.
func TestOutbox(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	rdb := keyspaceClient(t)
	ctx := context.Background()
	r, err := bench.Outbox(ctx, bench.Env{Redis: rdb}, bench.OutboxOptions{
		DB: db.Pool, Tx: 60, Rounds: 3, LagRate: 200, LagDuration: 500 * time.Millisecond, RelayRows: 2000})
	require.NoError(t, err)
	require.Equal(t, "outbox", r.Scenario)
	require.Equal(t, "1ms", r.Params["poll_interval"], "the worker's poll interval used is reported")
	for _, v := range []string{bench.VariantAlone, bench.VariantOutbox, bench.VariantOutboxStatement, bench.VariantOutboxBatched,
		bench.VariantEnqueueAfterCommit, bench.VariantOutboxNoNotify, bench.VariantRoundTrip} {
		for _, g := range []string{"_1", "_8"} {
			require.Positive(t, r.TxUsPerTx[v+g], v+g)
		}
	}
	require.InDelta(t, r.TxUsPerTx["outbox_1"]-r.TxUsPerTx["alone_1"], r.AddedUsPerTx, 1e-9)
	require.Len(t, r.AddedUsPerTxRounds, 3, "one figure per cost round")
	require.True(t, slices.IsSorted(r.AddedUsPerTxRounds))
	require.GreaterOrEqual(t, r.AddedUsPerTx, r.AddedUsPerTxRounds[0]-1e-9, "the run's figure lies within its rounds'")
	require.LessOrEqual(t, r.AddedUsPerTx, r.AddedUsPerTxRounds[2]+1e-9, "the run's figure lies within its rounds'")
	require.InDelta(t, r.TxUsPerTx["enqueue_after_commit_1"]-r.TxUsPerTx["alone_1"], r.AddedUsPerTxEnqueueAfterCommit, 1e-9)
	require.InDelta(t, r.TxUsPerTx["outbox_statement_1"]-r.TxUsPerTx["alone_1"], r.AddedUsPerTxStatement, 1e-9)
	require.Len(t, r.AddedUsPerTxStatementRounds, 3, "one figure per cost round")
	require.True(t, slices.IsSorted(r.AddedUsPerTxStatementRounds))
	require.GreaterOrEqual(t, r.AddedUsPerTxStatement, r.AddedUsPerTxStatementRounds[0]-1e-9)
	require.LessOrEqual(t, r.AddedUsPerTxStatement, r.AddedUsPerTxStatementRounds[2]+1e-9)
	require.InDelta(t, r.TxUsPerTx["outbox_batched_1"]-r.TxUsPerTx["alone_1"], r.AddedUsPerTxBatched, 1e-9)
	require.InDelta(t, r.TxUsPerTx["round_trip_1"]-r.TxUsPerTx["alone_1"], r.RoundTripUs, 1e-9)
	require.Len(t, r.AddedUsPerTxBatchedRounds, 3, "one figure per cost round")
	require.True(t, slices.IsSorted(r.AddedUsPerTxBatchedRounds))
	require.InDelta(t, r.TxUsPerTx["outbox_8"]-r.TxUsPerTx["alone_8"], r.AddedUsPerTx8, 1e-9)
	require.InDelta(t, r.TxUsPerTx["outbox_statement_8"]-r.TxUsPerTx["alone_8"], r.AddedUsPerTxStatement8, 1e-9)
	require.InDelta(t, r.TxUsPerTx["outbox_batched_8"]-r.TxUsPerTx["alone_8"], r.AddedUsPerTxBatched8, 1e-9)
	require.InDelta(t, r.TxUsPerTx["enqueue_after_commit_8"]-r.TxUsPerTx["alone_8"], r.AddedUsPerTxEnqueueAfterCommit8, 1e-9)
	require.InDelta(t, r.TxUsPerTx["outbox_1"]/r.TxUsPerTx["alone_1"], r.Ratios["outbox_vs_alone_1"], 1e-9)
	require.InDelta(t, r.TxUsPerTx["outbox_8"]/r.TxUsPerTx["enqueue_after_commit_8"], r.Ratios["outbox_vs_enqueue_after_commit_8"], 1e-9)
	require.Positive(t, r.Baselines["tx_per_s_alone_1"])
	require.Positive(t, r.Baselines["tx_per_s_alone_8"])

	// The relay runs on a pool of its own, as `invalidator relay` and
	// `worker --outbox-dsn` do: on the producers' pool its rounds waited for
	// a connection, and for a new server process when the producers held
	// them all, which made the first lag samples' tail. No connection of the
	// caller's pool has prepared the relay's claim.
	// (This query's own text starts with SELECT, so it cannot match.)
	conns := db.Pool.AcquireAllIdle(ctx)
	require.NotEmpty(t, conns)
	claims := 0
	for _, c := range conns {
		var n int
		err := c.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'DELETE FROM % RETURNING %'`).Scan(&n)
		c.Release() // all of them, before any assertion: the pool's Close waits for them
		require.NoError(t, err)
		claims += n
	}
	require.Zero(t, claims, "connections of the producers' pool ran the relay's claim")

	require.Positive(t, r.LagP50Ms)
	require.LessOrEqual(t, r.LagP50Ms, r.LagP90Ms)
	require.LessOrEqual(t, r.LagP90Ms, r.LagP99Ms)
	require.LessOrEqual(t, r.LagP99Ms, r.LagMaxMs)

	require.EqualValues(t, 2000, r.Keys)
	require.Positive(t, r.Seconds)
	require.Positive(t, r.RelayInvalidationsPerS)
	require.Equal(t, r.KeysPerSec, r.RelayInvalidationsPerS)
	require.Positive(t, r.RedisCPUSeconds)

	b, err := json.Marshal(r)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	for _, f := range []string{"added_us_per_tx", "added_us_per_tx_rounds", "added_us_per_tx_statement",
		"added_us_per_tx_statement_rounds", "added_us_per_tx_batched", "added_us_per_tx_batched_rounds",
		"added_us_per_tx_enqueue_after_commit", "lag_p50_ms", "lag_p99_ms", "lag_max_ms", "relay_invalidations_per_s",
		"added_us_per_tx_8", "added_us_per_tx_statement_8", "added_us_per_tx_batched_8",
		"added_us_per_tx_enqueue_after_commit_8", "tx_us_per_tx"} {
		require.Contains(t, got, f)
	}

	var tables int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename LIKE 'invalidator_bench_%'`).Scan(&tables))
	require.Zero(t, tables, "the scenario drops its tables")
	left, err := rdb.Keys(ctx, "bench:*").Result()
	require.NoError(t, err)
	require.Empty(t, left, "the scenario cleans up its keys")
}
