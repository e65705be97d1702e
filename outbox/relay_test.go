package outbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/outbox"
	"github.com/invalidator/invalidator/worker"
)

// waitTimeout bounds the waits for events; reaching it is a failure, never
// a pass.
const waitTimeout = 60 * time.Second

// eventually polls cond until it holds, failing t after waitTimeout.
func eventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, waitTimeout, 5*time.Millisecond, append([]any{msg}, args...)...)
}

// runRelay runs r until the test ends and requires a clean stop.
func runRelay(t *testing.T, r *outbox.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// A write wakes an idle relay through NOTIFY: with hour-long polls, only
// the notification can make the task arrive.
func TestNotificationWakesTheRelay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	b.w = b.writer(t, outbox.WithNotifyInterval(0)) // every write notifies
	r := b.relay(t, func(c *outbox.RelayConfig) { c.PollInterval, c.BusyPoll = time.Hour, time.Hour })
	require.Error(t, r.Ready(ctx), "not ready before Run")
	runRelay(t, r)
	eventually(t, func() bool { return r.Ready(ctx) == nil }, "the relay listens")
	// The first round ran at start; wait until it is done (the table is
	// empty and stays so), so the write below can only be found by a wake-up.
	for i := range 3 {
		b.inTx(t, func(tx pgx.Tx) error { return b.w.DeleteKeys(ctx, outbox.Pgx(tx), fmt.Sprint("k", i)) })
		eventually(t, func() bool { return len(b.queuedKeys(t, "invalidator-standard")) == i+1 }, "write %d relayed", i)
	}
	// The relay deletes its rows in the commit that follows their enqueue.
	eventually(t, func() bool { return b.rows(t) == 0 }, "the relayed rows deleted")
}

// After a round that took a full batch the relay goes straight on to the
// next; after one that took fewer rows, which were all there were, it
// waits BusyPoll (or a notification), so that rows trickling in gather into
// fewer rounds. Here the waits are an hour long and only the first write
// notifies: five rows in batches of two make rounds of 2, 2 and 1, and no
// round after them (going straight on made an empty fourth one).
func TestRelayGoesOnAfterAFullBatchOnlyAndWaitsAfterAPartialOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	b.w = b.writer(t, outbox.WithNotifyInterval(time.Hour))
	r := b.relay(t, func(c *outbox.RelayConfig) { c.PollInterval, c.BusyPoll, c.BatchSize = time.Hour, time.Hour, 2 })
	var mu sync.Mutex
	var rounds []int
	outbox.SetAfterRound(r, func(n int) {
		mu.Lock()
		defer mu.Unlock()
		rounds = append(rounds, n)
	})
	got := func() []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(rounds)
	}
	runRelay(t, r)
	// The start's round, and one more when the LISTEN begins (for rows
	// committed before it): both empty.
	eventually(t, func() bool { return r.Ready(ctx) == nil && len(got()) >= 1 }, "the relay listens, its first round done")
	time.Sleep(300 * time.Millisecond)
	start := len(got())
	require.Equal(t, make([]int, start), got(), "rounds of an empty table")
	b.inTx(t, func(tx pgx.Tx) error {
		for i := range 5 {
			if err := b.w.DeleteKeys(ctx, outbox.Pgx(tx), fmt.Sprint("k", i)); err != nil {
				return err
			}
		}
		return nil
	})
	eventually(t, func() bool { return len(b.queuedKeys(t, "invalidator-standard")) == 5 }, "the five rows relayed")
	time.Sleep(300 * time.Millisecond) // room for a round that should not come
	require.Equal(t, []int{2, 2, 1}, got()[start:], "rows per round after the notification")
}

// A row whose transaction skipped its NOTIFY (the Writer notified just
// before) is still relayed by a warm relay, which keeps polling after a
// round that moved rows: with an hour-long PollInterval and a Writer that
// notifies once an hour, only that busy poll can find the second row.
func TestSkippedNotifyRowIsRelayedByAWarmRelay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	b.w = b.writer(t, outbox.WithNotifyInterval(time.Hour))
	r := b.relay(t, func(c *outbox.RelayConfig) { c.PollInterval = time.Hour })
	runRelay(t, r)
	eventually(t, func() bool { return r.Ready(ctx) == nil }, "the relay listens")
	b.inTx(t, func(tx pgx.Tx) error { return b.w.DeleteKeys(ctx, outbox.Pgx(tx), "notified") })
	eventually(t, func() bool { return len(b.queuedKeys(t, "invalidator-standard")) == 1 }, "the notifying write relayed")
	b.inTx(t, func(tx pgx.Tx) error { return b.w.DeleteKeys(ctx, outbox.Pgx(tx), "skipped") })
	eventually(t, func() bool { return len(b.queuedKeys(t, "invalidator-standard")) == 2 }, "the write without NOTIFY relayed")
	require.Equal(t, map[string]int{"notified": 1, "skipped": 1}, b.queuedKeys(t, "invalidator-standard"))
	eventually(t, func() bool { return b.rows(t) == 0 }, "the relayed rows deleted (in the commit after their enqueue)")
}

// The documented hole of WithNotifyInterval: a transaction skips its NOTIFY
// because another one of the same Writer notified, and that one rolls
// back. Nothing notifies; the row is found by the safety poll.
func TestRowOfARolledBackNotifierIsRelayedByThePoll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	b.w = b.writer(t, outbox.WithNotifyInterval(time.Hour))
	r := b.relay(t, func(c *outbox.RelayConfig) { c.PollInterval = 100 * time.Millisecond })
	runRelay(t, r)
	eventually(t, func() bool { return r.Ready(ctx) == nil }, "the relay listens")

	notifier, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, b.w.DeleteKeys(ctx, outbox.Pgx(notifier), "rolled-back")) // carries the NOTIFY
	b.inTx(t, func(tx pgx.Tx) error { return b.w.DeleteKeys(ctx, outbox.Pgx(tx), "committed") })
	require.NoError(t, notifier.Rollback(ctx))

	eventually(t, func() bool { return len(b.queuedKeys(t, "invalidator-standard")) == 1 }, "the skipped write relayed")
	require.Equal(t, map[string]int{"committed": 1}, b.queuedKeys(t, "invalidator-standard"))
	// The task is on the queue before the round commits its delete.
	eventually(t, func() bool { return b.rows(t) == 0 }, "the relayed row deleted")
}

// Ready follows the relay's life: not before Run, yes while it runs and
// listens, not after it returns.
func TestReadyFollowsRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	r := b.relay(t, nil)
	require.ErrorContains(t, r.Ready(ctx), "not running")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	eventually(t, func() bool { return r.Ready(ctx) == nil }, "ready once listening")
	require.ErrorContains(t, r.Run(ctx), "already running")
	stop()
	require.NoError(t, <-done)
	require.ErrorContains(t, r.Ready(ctx), "not running")
}

// 1,000 concurrent transactions, a tenth of them rolled back, each
// invalidate exactly their own key through a relay and a real worker.
func TestConcurrentTransactionsInvalidateExactlyTheirKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	const n = 1000
	for i := range n {
		require.NoError(t, b.queue.Set(ctx, fmt.Sprintf("item:%d", i), "cached", 0).Err())
	}
	_, err := b.db.Pool.Exec(ctx, `INSERT INTO items SELECT g, 0 FROM generate_series(0, $1 - 1) g`, n)
	require.NoError(t, err)

	w, err := worker.New(worker.Config{Queue: b.queue, Policy: b.policy, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	wctx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.Run(wctx) }()
	t.Cleanup(func() {
		stopWorker()
		require.NoError(t, <-workerDone)
	})
	runRelay(t, b.relay(t, nil))

	var wg sync.WaitGroup
	sem := make(chan struct{}, 32) // the pool's connections bound it anyway
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			tx, err := b.db.Pool.Begin(ctx)
			if !assertNoError(t, err) {
				return
			}
			defer func() { _ = tx.Rollback(ctx) }()
			_, err = tx.Exec(ctx, `UPDATE items SET v = v + 1 WHERE id = $1`, i)
			if !assertNoError(t, err) || !assertNoError(t, b.w.DeleteKeys(ctx, outbox.Pgx(tx), fmt.Sprintf("item:%d", i))) {
				return
			}
			if i%10 == 0 {
				return // rolled back: its key must stay
			}
			assertNoError(t, tx.Commit(ctx))
		})
	}
	wg.Wait()

	eventually(t, func() bool {
		left, err := b.queue.Exists(ctx, committedKeys(n)...).Result()
		return err == nil && left == 0
	}, "every committed transaction's key is deleted")
	kept, err := b.queue.Exists(ctx, rolledBackKeys(n)...).Result()
	require.NoError(t, err)
	require.EqualValues(t, n/10, kept, "a rolled-back transaction's key is never deleted")
	eventually(t, func() bool { return b.rows(t) == 0 }, "the relayed rows deleted (in the commit after their enqueue)")
}

func committedKeys(n int) []string {
	var ks []string
	for i := range n {
		if i%10 != 0 {
			ks = append(ks, fmt.Sprintf("item:%d", i))
		}
	}
	return ks
}

func rolledBackKeys(n int) []string {
	var ks []string
	for i := 0; i < n; i += 10 {
		ks = append(ks, fmt.Sprintf("item:%d", i))
	}
	return ks
}

// assertNoError is require.NoError for goroutines other than the test's.
func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

// writeKeys commits n transactions, one key each: key:0 ... key:n-1.
func (b *bundle) writeKeys(t *testing.T, from, n int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < from+n; i++ {
		b.inTx(t, func(tx pgx.Tx) error { return b.w.DeleteKeys(ctx, outbox.Pgx(tx), fmt.Sprintf("key:%d", i)) })
	}
}

// requireAllKeys checks that every key:i, i < n, is queued, and returns how
// many copies are queued beyond one each.
func (b *bundle) requireAllKeys(t *testing.T, n int) int {
	t.Helper()
	got := b.queuedKeys(t, "invalidator-standard")
	extra := 0
	for i := range n {
		c := got[fmt.Sprintf("key:%d", i)]
		require.NotZero(t, c, "key:%d lost", i)
		extra += c - 1
	}
	require.Len(t, got, n, "no key that was never written")
	return extra
}

// Two relays share one outbox: while one holds a batch, the other takes
// the rows after it (SKIP LOCKED); no row is lost or sent twice.
func TestTwoRelaysSplitTheWork(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	const n = 300
	b.writeKeys(t, 0, n)

	small := func(c *outbox.RelayConfig) { c.BatchSize = 50 }
	a, other := b.relay(t, small), b.relay(t, small)
	var aRows, otherRows atomic.Int64
	holding := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	outbox.SetAfterEnqueue(a, func(context.Context, pgx.Tx) {
		aRows.Add(50)
		once.Do(func() {
			close(holding)
			<-release // hold the first batch's rows locked
		})
	})
	outbox.SetAfterEnqueue(other, func(context.Context, pgx.Tx) { otherRows.Add(50) })

	aDone := make(chan error, 1)
	go func() { _, err := a.Drain(ctx); aDone <- err }()
	<-holding
	got, err := other.Drain(ctx) // everything but a's locked batch
	require.NoError(t, err)
	require.Equal(t, n-50, got)
	close(release)
	require.NoError(t, <-aDone)

	require.Zero(t, b.rows(t))
	require.Zero(t, b.requireAllKeys(t, n), "no row was sent twice")
	require.NotZero(t, otherRows.Load())
}

// A relay killed mid-batch (its connection dropped after the enqueue,
// before the commit, as a kill -9 does) loses nothing: the database rolls
// the batch back and the next relay sends it again, the only repeat.
func TestKilledRelayRepeatsAtMostItsBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	const n, batch = 250, 100
	b.writeKeys(t, 0, n)

	victim := b.relay(t, func(c *outbox.RelayConfig) { c.BatchSize = batch })
	outbox.SetAfterEnqueue(victim, func(ctx context.Context, tx pgx.Tx) {
		pid := tx.Conn().PgConn().PID()
		_, err := b.db.Pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid)
		assertNoError(t, err)
	})
	_, err := victim.Drain(ctx)
	require.Error(t, err, "the killed relay's commit fails")
	require.Equal(t, n, b.rows(t), "its batch is back in the table")

	got, err := b.relay(t, nil).Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, n, got)
	extra := b.requireAllKeys(t, n)
	require.Equal(t, batch, extra, "exactly the killed batch was sent twice")
}

// The queue Redis stopped while transactions commit: rows accumulate, the
// relay retries, and everything drains once Redis is back.
func TestQueueRedisOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.StartServerWith(t, redistest.ServerOptions{AppendOnly: true})
	b := setupWith(t, outbox.Config{}, srv.NewClient())
	reg := prometheus.NewRegistry()
	m, err := outbox.NewMetrics(reg)
	require.NoError(t, err)
	r := b.relay(t, func(c *outbox.RelayConfig) {
		c.Metrics = m
		c.RetryMax = 500 * time.Millisecond
	})
	runRelay(t, r)
	b.writeKeys(t, 0, 50)
	eventually(t, func() bool { return len(b.queuedKeys(t, "invalidator-standard")) == 50 }, "relayed before the outage")

	srv.Stop()
	start := time.Now()
	b.writeKeys(t, 50, 100) // the application's transactions are unaffected
	failures := func() float64 { return testutil.ToFloat64(m.RelayErrors("enqueue")) }
	eventually(t, func() bool { return failures() >= 3 && r.Ready(ctx) != nil }, "the relay notices the outage")
	// Transactions go on committing through a 10-second outage.
	n := 150
	for time.Since(start) < 10*time.Second {
		b.writeKeys(t, n, 10)
		n += 10
	}
	require.Equal(t, n-50, b.rows(t), "rows accumulate while Redis is down")
	srv.Start()

	eventually(t, func() bool { return b.rows(t) == 0 }, "the outbox drains once Redis is back")
	eventually(t, func() bool { return r.Ready(ctx) == nil }, "ready again")
	require.Zero(t, b.requireAllKeys(t, n))
}

// The relay's metrics count rows and tasks, and sample the depth and the
// oldest row's age.
func TestRelayMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	reg := prometheus.NewRegistry()
	m, err := outbox.NewMetrics(reg)
	require.NoError(t, err)
	b.writeKeys(t, 0, 30)

	// A relay whose queue Redis is gone moves nothing, but samples.
	gone := redistest.StartServer(t)
	goneClient := gone.NewClient()
	gone.Stop()
	stuck := b.relay(t, func(c *outbox.RelayConfig) {
		c.Queue, c.Metrics, c.StatsInterval = goneClient, m, 10*time.Millisecond
	})
	stuckCtx, stop := context.WithCancel(ctx)
	stuckDone := make(chan error, 1)
	go func() { stuckDone <- stuck.Run(stuckCtx) }()
	eventually(t, func() bool {
		return testutil.ToFloat64(m.Depth()) == 30 && testutil.ToFloat64(m.OldestAge()) > 0
	}, "depth and age sampled")
	stop()
	require.NoError(t, <-stuckDone)
	require.Equal(t, 30, b.rows(t))

	got, err := b.relay(t, func(c *outbox.RelayConfig) { c.Metrics = m }).Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 30, got)
	require.Equal(t, 30.0, testutil.ToFloat64(m.RowsRelayed()))
	require.Equal(t, 1.0, testutil.ToFloat64(m.TasksEnqueued()), "30 single-key rows, one task")
	require.NotZero(t, testutil.ToFloat64(m.RelayErrors("enqueue")))
	n, err := testutil.GatherAndCount(reg, "invalidator_outbox_relay_lag_seconds", "invalidator_outbox_batch_duration_seconds")
	require.NoError(t, err)
	require.Equal(t, 2, n)
}

// A round's claim costs the batch, not the backlog: it finds its rows by
// the primary key, never by scanning the table, so a backlog left by a long
// queue outage drains in linear time.
func TestClaimUsesTheIndexNotATableScan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	fill(t, b, enqueue.NewBuilder(enqueue.Config{Policy: b.policy}), 20000)
	_, err := b.db.Pool.Exec(ctx, `ANALYZE invalidator_outbox`)
	require.NoError(t, err)
	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	rows, err := tx.Query(ctx, "EXPLAIN "+outbox.ClaimSQL(b.relay(t, nil)), 1000)
	require.NoError(t, err)
	var lines []string
	for rows.Next() {
		var l string
		require.NoError(t, rows.Scan(&l))
		lines = append(lines, l)
	}
	require.NoError(t, rows.Err())
	plan := strings.Join(lines, "\n")
	require.NotContains(t, plan, "Seq Scan", plan)
	require.Contains(t, plan, "Index Scan using invalidator_outbox_pkey", plan)
}

// The outbox is empty most of its life, and autovacuum records it so. A
// relay's claim is a prepared statement, and after five runs PostgreSQL
// may keep a generic plan made for that empty table: a sequential scan
// and a sort, and for the delete a sequential scan filtering every row
// against the batch. When rows pile up (a queue Redis outage, a burst)
// that plan reads the whole table per batch, so the drain that matters
// most went quadratic: 14 k rows/s instead of 150 k at 50 k rows in `bench
// outbox`, slower the longer the outage. The relay plans each claim for
// the table it finds. Checked by the tuples the relay's rounds read by
// sequential scan, which its server process reports when it exits.
func TestClaimIsPlannedForTheTableItFinds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	_, err := b.db.Pool.Exec(ctx, `VACUUM ANALYZE invalidator_outbox`)
	require.NoError(t, err)
	cfg := b.db.Pool.Config().Copy()
	cfg.MaxConns = 1 // one server process runs every round
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	r := b.relay(t, func(c *outbox.RelayConfig) { c.DB = pool })
	for range 10 { // past the five runs after which a generic plan may stay
		n, err := r.Drain(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
	}
	const rows = 20000
	fill(t, b, enqueue.NewBuilder(enqueue.Config{Policy: b.policy}), rows)
	n, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, rows, n)
	var pid int32
	require.NoError(t, pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	pool.Close() // its server process reports its statistics as it exits
	require.Eventually(t, func() bool {
		var alive int
		err := b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&alive)
		return err == nil && alive == 0
	}, 10*time.Second, 10*time.Millisecond, "the relay's server process exits")

	var read int64
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT coalesce(seq_tup_read, 0) FROM pg_stat_user_tables
		WHERE relname = 'invalidator_outbox'`).Scan(&read))
	// A plan for the table as it is reads none by sequential scan; the
	// empty table's generic plan read the remaining rows in every batch:
	// 20 batches of 1000, about 210 k tuples.
	require.Less(t, read, int64(rows), "tuples the claims read by sequential scan")
}

// A batch whose enqueue outlasts RoundTimeout (a slow queue Redis, events
// that cannot merge) is rolled back; retried whole it would never drain and
// would enqueue its tasks again each time. The relay halves its batch after
// such a round until one fits, and the outbox drains.
func TestBatchTooSlowForRoundTimeoutStillDrains(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.NewDB(t).Client
	var slow atomic.Bool
	rdb.AddHook(delayHook{slow: &slow, d: 40 * time.Millisecond})
	b := setupWith(t, outbox.Config{}, rdb)
	b.inTx(t, func(tx pgx.Tx) error {
		for i := range 64 {
			if err := b.w.Publish(ctx, outbox.Pgx(tx), "product.updated", map[string]string{"id": fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	// 64 events are 64 enqueues, 16 at a time: 4 waves of 40ms each, over
	// the 120ms a round may take; 16 rows are one wave.
	r := b.relay(t, func(c *outbox.RelayConfig) { c.RoundTimeout = 120 * time.Millisecond })
	slow.Store(true)
	var errs []error
	for range 20 {
		_, err := r.Drain(ctx)
		if err == nil {
			break
		}
		errs = append(errs, err)
	}
	slow.Store(false)
	require.NotEmpty(t, errs, "the first round did run out of its timeout")
	require.Zero(t, b.rows(t), "the outbox drains (failed rounds: %d, first: %v)", len(errs), errs[0])
	require.ErrorIs(t, errs[0], context.DeadlineExceeded)
}

// A round's commit does not wait for its WAL flush (synchronous_commit off,
// for that transaction only): the flush was most of a round's time, and
// every row committed meanwhile waited for it, which made the commit ->
// key gone tail. Losing the deletion in a database crash only sends its
// rows again, which at-least-once allows.
func TestRelayRoundCommitsWithoutWaitingForTheFlush(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	var server string
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&server))
	require.Equal(t, "on", server, "the server default, which the relay's rounds must not use")
	b.writeKeys(t, 0, 3)

	r := b.relay(t, nil)
	var inRound string
	outbox.SetAfterEnqueue(r, func(ctx context.Context, tx pgx.Tx) {
		assertNoError(t, tx.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&inRound))
	})
	got, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, got)
	require.Equal(t, "off", inRound, "the round's transaction")
	b.requireAllKeys(t, 3)

	// SET LOCAL: the pool's connections keep the server's setting for the
	// application's own transactions.
	var after string
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&after))
	require.Equal(t, "on", after)
}
