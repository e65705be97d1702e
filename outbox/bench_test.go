package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/outbox"
)

// BenchmarkTxOverhead measures what one outbox write adds to a small
// transaction (BEGIN, one UPDATE, COMMIT) at one goroutine, against the
// private PostgreSQL on loopback. Four variants run in turn within one loop
// (rotating which goes first), so all see the same machine state: the
// transaction alone, with one DeleteKeys through outbox.Pgx (its own round
// trip), with the write queued in the UPDATE's pgx.Batch (outbox.PgxBatch),
// and with the transaction begun by outbox.BeginPgx, the write riding its
// COMMIT. It reports the mean and the median µs per transaction
// of each and the added µs against the transaction alone (the issue's
// target: added <= 100 µs). The medians resist a machine shared with other
// work.
func BenchmarkTxOverhead(b *testing.B) {
	bb := setupBench(b)
	ctx := context.Background()
	_, err := bb.db.Pool.Exec(ctx, `INSERT INTO items SELECT g, 0 FROM generate_series(0, 999) g`)
	require.NoError(b, err)
	const (
		alone = iota
		separate
		batched
		commit
		variants
	)
	names := [variants]string{"alone", "outbox", "batched", "commit"}
	tx := func(i, variant int) time.Duration {
		start := time.Now()
		var tx pgx.Tx
		var otx outbox.Tx
		if variant == commit {
			t, err := outbox.BeginPgx(ctx, bb.db.Pool, pgx.TxOptions{})
			if err != nil {
				b.Fatal(err)
			}
			tx, otx = t, t
		} else {
			t, err := bb.db.Pool.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			tx, otx = t, outbox.Pgx(t)
		}
		var err error
		key := fmt.Sprintf("item:%d", i%1000)
		switch variant {
		case batched:
			batch := &pgx.Batch{}
			batch.Queue(`UPDATE items SET v = v + 1 WHERE id = $1`, i%1000)
			if err := bb.w.DeleteKeys(ctx, outbox.PgxBatch(batch), key); err != nil {
				b.Fatal(err)
			}
			err = tx.SendBatch(ctx, batch).Close()
		default:
			_, err = tx.Exec(ctx, `UPDATE items SET v = v + 1 WHERE id = $1`, i%1000)
			if err == nil && (variant == separate || variant == commit) {
				err = bb.w.DeleteKeys(ctx, otx, key)
			}
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for i := range 300 { // warm the pool's connections and statement caches
		tx(i, i%variants)
	}
	var took [variants][]time.Duration
	i := 0
	for b.Loop() {
		for k := range variants {
			v := (i + k) % variants
			took[v] = append(took[v], tx(i, v))
		}
		i++
		if i%5000 == 0 { // keep the table small, as a running relay would
			b.StopTimer()
			_, err := bb.db.Pool.Exec(ctx, `DELETE FROM invalidator_outbox`)
			require.NoError(b, err)
			b.StartTimer()
		}
	}
	var mean, median [variants]float64
	for v := range variants {
		var sum time.Duration
		for _, d := range took[v] {
			sum += d
		}
		mean[v] = float64(sum.Nanoseconds()) / 1e3 / float64(len(took[v]))
		slices.Sort(took[v])
		median[v] = float64(took[v][len(took[v])/2].Nanoseconds()) / 1e3
		b.ReportMetric(mean[v], names[v]+"_us/tx")
		b.ReportMetric(median[v], names[v]+"_p50_us/tx")
	}
	b.ReportMetric(mean[separate]-mean[alone], "added_us/tx")
	b.ReportMetric(median[separate]-median[alone], "added_p50_us/tx")
	b.ReportMetric(mean[batched]-mean[alone], "added_batched_us/tx")
	b.ReportMetric(median[batched]-median[alone], "added_batched_p50_us/tx")
	b.ReportMetric(mean[commit]-mean[alone], "added_commit_us/tx")
	b.ReportMetric(median[commit]-median[alone], "added_commit_p50_us/tx")
}

// BenchmarkRelayThroughput measures one relay draining rows into the queue
// Redis, one row per transaction as many request handlers write them:
// single-key deletes (merged into few tasks; the target is >= 20k
// invalidations/s) and events (one task each, nothing to merge).
func BenchmarkRelayThroughput(b *testing.B) {
	for _, kind := range []string{"keys", "events"} {
		b.Run(kind, func(b *testing.B) {
			const rows = 20000
			bb := setupBench(b)
			ctx := context.Background()
			r := bb.relay(b, nil)
			builder := enqueue.NewBuilder(enqueue.Config{Policy: bb.policy})
			total := 0
			var elapsed time.Duration
			for b.Loop() {
				b.StopTimer()
				fillKind(b, bb, builder, rows, kind == "events")
				b.StartTimer()
				start := time.Now()
				n, err := r.Drain(ctx)
				elapsed += time.Since(start)
				if err != nil || n != rows {
					b.Fatalf("drained %d of %d rows: %v", n, rows, err)
				}
				total += n
			}
			b.ReportMetric(float64(total)/elapsed.Seconds(), "invalidations/s")
		})
	}
}

// fill inserts n single-key rows as the Writer would, in one COPY.
func fill(b testing.TB, bb *bundle, builder *enqueue.Builder, n int) {
	fillKind(b, bb, builder, n, false)
}

// fillKind inserts n rows of single-key deletes or of events.
func fillKind(b testing.TB, bb *bundle, builder *enqueue.Builder, n int, events bool) {
	src := make([][]any, n)
	for i := range src {
		var m enqueue.Message
		if events {
			var err error
			m, err = builder.Publish("product.updated", map[string]string{"id": fmt.Sprint(i)})
			require.NoError(b, err)
		} else {
			ms, err := builder.DeleteKeys(fmt.Sprintf("user:%d:profile", i))
			require.NoError(b, err)
			m = ms[0]
		}
		src[i] = []any{m.Kind, m.Payload, m.Queue, int32(m.MaxRetry), m.Timeout.Milliseconds()}
	}
	_, err := bb.db.Pool.CopyFrom(context.Background(), pgx.Identifier{outbox.DefaultTable},
		[]string{"kind", "payload", "queue", "max_retry", "timeout_ms"}, pgx.CopyFromRows(src))
	require.NoError(b, err)
}

// BenchmarkRelayLag measures commit → task on the queue through a running
// relay (woken by NOTIFY), one transaction at a time at up to 1,000 per
// second: each transaction commits one key delete, and the relay's test
// hook notes when the round's enqueue has returned (before its own commit).
// It reports p50, p99 and max in ms, and the same for the writing
// transaction itself, which shows how much of the tail is the machine's (the
// issue's target for commit → key gone, which adds the worker, is p99 <= 10
// ms).
func BenchmarkRelayLag(b *testing.B) {
	bb := setupBench(b)
	ctx := context.Background()
	r := bb.relay(b, nil)
	enqueued := make(chan time.Time, 1)
	outbox.SetAfterEnqueue(r, func(context.Context, pgx.Tx) { enqueued <- time.Now() })
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	b.Cleanup(func() {
		cancel()
		require.NoError(b, <-done)
	})
	require.Eventually(b, func() bool { return r.Ready(ctx) == nil }, time.Minute, time.Millisecond)
	var lags, txs []time.Duration
	i := 0
	for b.Loop() {
		next := time.Now().Add(time.Millisecond)
		start := time.Now()
		tx, err := bb.db.Pool.Begin(ctx)
		require.NoError(b, err)
		require.NoError(b, bb.w.DeleteKeys(ctx, outbox.Pgx(tx), fmt.Sprintf("item:%d", i)))
		require.NoError(b, tx.Commit(ctx))
		committed := time.Now()
		txs = append(txs, committed.Sub(start))
		lags = append(lags, (<-enqueued).Sub(committed))
		i++
		time.Sleep(time.Until(next)) // pace: at most 1,000 transactions/s
	}
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
		b.ReportMetric(ms(d[len(d)/2]), name+"_p50_ms")
		b.ReportMetric(ms(d[len(d)*99/100]), name+"_p99_ms")
		b.ReportMetric(ms(d[len(d)-1]), name+"_max_ms")
	}
	report("lag", lags)
	report("tx", txs)
}
