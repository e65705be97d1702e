package devstack

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(func() int { return redistest.Main(m) }))
}

// The staleness rule (package sim's): a read is stale only against a write
// that completed the bound or more before the read started.
func TestSourceStale(t *testing.T) {
	t.Parallel()
	s := newSource()
	s.commit("p:1") // version 1
	time.Sleep(20 * time.Millisecond)
	s.commit("p:1") // version 2
	now := time.Now()
	require.False(t, s.hist.Stale("p:1", now, 2, 10*time.Millisecond), "the newest version is never stale")
	require.False(t, s.hist.Stale("p:1", now, 1, time.Second), "version 2 is younger than the bound")
	require.True(t, s.hist.Stale("p:1", now.Add(50*time.Millisecond), 1, 10*time.Millisecond), "version 2 completed long enough ago")
	require.True(t, s.hist.Stale("p:1", now, 0, 10*time.Millisecond), "version 1 completed long enough ago")
	require.False(t, s.hist.Stale("p:9", now, 0, 0), "a row never written")
}

// The whole loop runs on a real redis-server and on the embedded Redis:
// writes publish events, the worker applies them, reads go through
// cacheaside, and no read is stale.
func TestWorkload(t *testing.T) {
	t.Parallel()
	t.Run("redis-server", func(t *testing.T) {
		t.Parallel()
		runWorkload(t, redistest.NewDB(t).Client, nil)
	})
	// With PostgreSQL the writes publish through the outbox and a relay
	// the run starts; the final check waits for the outbox to drain.
	t.Run("postgres-outbox", func(t *testing.T) {
		t.Parallel()
		pg := pgtest.NewDB(t)
		runWorkload(t, redistest.NewDB(t).Client, pg.Pool)
		var left int
		require.NoError(t, pg.Pool.QueryRow(t.Context(),
			`SELECT count(*) FROM pg_tables WHERE tablename LIKE 'invalidator_dev_outbox%'`).Scan(&left))
		require.Zero(t, left, "the run drops its outbox")
		require.NoError(t, pg.Pool.QueryRow(t.Context(), `SELECT count(*) FROM invalidator_dev_rows`).Scan(&left))
		require.Zero(t, left, "the run deletes its rows")
	})
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		emb, err := StartEmbedded()
		require.NoError(t, err)
		t.Cleanup(emb.Close)
		c := emb.Client()
		t.Cleanup(func() { _ = c.Close() })
		require.Contains(t, emb.URL(), "redis://127.0.0.1:")
		runWorkload(t, c, nil)
	})
}

func runWorkload(t *testing.T, rdb redis.UniversalClient, db *pgxpool.Pool) {
	t.Helper()
	policy, err := keyspec.Load("../../../../examples/policy.yaml")
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	m, err := worker.NewMetrics(reg)
	require.NoError(t, err)
	w, err := worker.New(worker.Config{Queue: rdb, Policy: policy, Metrics: m, Logger: quiet(), PollInterval: time.Millisecond})
	require.NoError(t, err)
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()

	var statuses []Status
	sum, err := RunWorkload(ctx, Config{Queue: rdb, Cache: rdb, Policy: policy, Gatherer: reg, Registerer: reg,
		Entities: 20, WriteRate: 100, DB: db, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)), Status: func(s Status) { statuses = append(statuses, s) },
		// Under the race detector the embedded Redis can lag by seconds;
		// the timing-free final check below is what must never fail.
		LagBound: time.Minute})
	require.NoError(t, err)
	stop()
	require.NoError(t, <-done)
	require.Positive(t, sum.Writes)
	require.Positive(t, sum.Reads)
	require.Positive(t, sum.Invalidations, "the worker applied nothing")
	t.Logf("summary %+v", sum)
	for _, s := range statuses {
		t.Log(s)
	}
	require.Zero(t, sum.StaleReads)
	require.True(t, sum.Drained)
	require.Positive(t, sum.Checked)
	require.Zero(t, sum.StaleCached, "a stale value stayed cached after every invalidation was applied")
	require.Zero(t, sum.WriteErrors+sum.ReadErrors)
	require.Zero(t, sum.DeadLetters)
	require.NotEmpty(t, statuses, "no status line in 3s")
	require.Contains(t, statuses[0].String(), "stale reads 0")
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// The final check catches a value older than the source left in the cache.
func TestFinalCheckCatchesStaleValue(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	policy, err := keyspec.Load("../../../../examples/policy.yaml")
	require.NoError(t, err)
	cfg := Config{Queue: db.Client, Cache: db.Client, Policy: policy, Logger: quiet()}
	cfg.withDefaults()
	fam, err := policy.Family("product")
	require.NoError(t, err)
	cache, err := cacheaside.New(cacheaside.Config{Redis: db.Client})
	require.NoError(t, err)
	src := newSource()
	src.commit("product:1")
	src.commit("user:2")
	// The cache holds version 1 of product 1; the source moved to 2 and no
	// invalidation followed.
	_, err = cache.GetFamily(t.Context(), fam, map[string]string{"id": "1"},
		func(context.Context) ([]byte, error) { return []byte("1"), nil })
	require.NoError(t, err)
	src.commit("product:1")

	fams := []*keyspec.Family{fam, nil, mustFamily(t, policy, "user_profile")}
	drained, checked, stale, err := finalCheck(t.Context(), cfg, asynq.NewInspectorFromRedisClient(db.Client), cache, fams, src)
	require.NoError(t, err)
	require.True(t, drained)
	require.Equal(t, 2, checked)
	require.Equal(t, 1, stale)
}

func mustFamily(t *testing.T, p *keyspec.Policy, name string) *keyspec.Family {
	t.Helper()
	f, err := p.Family(name)
	require.NoError(t, err)
	return f
}
