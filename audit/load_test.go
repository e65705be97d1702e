package audit_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/audit"
	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

const loadPolicy = `version: 1
classes:
  standard: {}
families:
  product:
    template: "product:{id}"
    params: {id: {match: '[0-9]+'}}
    class: standard
`

// Under about 1,000 writes/s, each the real path of an application (write
// the source, then enqueue the key's invalidation), a real worker applying
// the invalidations, and readers refilling through cacheaside's leases,
// every difference the audit sees is an invalidation in flight: the
// re-check, after the policy's default recheck delay, must leave 0
// inconsistent.
func TestAudit_NoFalsePositivesUnderWriteAndInvalidateLoad(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t) // queue and cache
	pol, err := keyspec.Parse("p.yaml", []byte(loadPolicy))
	require.NoError(t, err)
	fam := pol.Families["product"]
	w, err := worker.New(worker.Config{Queue: rdb, Policy: pol, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	wctx, stopWorker := context.WithCancel(context.Background())
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.Run(wctx) }()
	t.Cleanup(func() { stopWorker(); <-workerDone })
	// Coalescing, as an application writing this fast would enqueue: the
	// concurrent writers' keys share tasks.
	producer, err := enqueue.New(rdb, enqueue.Config{Policy: pol, Coalesce: &enqueue.CoalesceConfig{Window: 2 * time.Millisecond}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = producer.Close() })

	src := &memSource{rows: map[string]string{}}
	const ids = 200
	for i := range ids {
		src.set(fmt.Sprint(i), "v0")
	}
	cache, err := cacheaside.New(cacheaside.Config{Redis: rdb, TTL: time.Hour})
	require.NoError(t, err)
	get := func(ctx context.Context, id string) {
		key, _ := fam.Key(map[string]string{"id": id})
		_, _ = cache.Get(ctx, key, func(ctx context.Context) ([]byte, error) {
			v, _, err := src.Fetch(ctx, map[string]string{"id": id})
			return v, err
		})
	}
	for i := range ids {
		get(t.Context(), fmt.Sprint(i))
	}

	ctx, stop := context.WithCancel(t.Context())
	var (
		wg       sync.WaitGroup
		writes   atomic.Int64
		failures atomic.Int64
	)
	// ~1,000 writes/s for as long as the audit runs, 60,000 at most:
	// sixteen writers, each a write every 16 ms, since a coalesced enqueue
	// waits for its batch's round trip. The re-check delay is the lag budget:
	// the premise is a worker that keeps up. On a machine too loaded for
	// this rate the writers wait while the queue holds a backlog, so the
	// load stays as high as the worker can take rather than outrunning it.
	insp := asynq.NewInspectorFromRedisClient(rdb)
	queue := pol.Classes["standard"].Queue
	backlog := func() int {
		info, err := insp.GetQueueInfo(queue)
		if err != nil {
			return 0 // no task yet
		}
		return info.Pending
	}
	const writers = 16
	for wr := range writers {
		wg.Go(func() {
			tick := time.NewTicker(writers * time.Millisecond)
			defer tick.Stop()
			for n := 0; n < 60000/writers && ctx.Err() == nil; n++ {
				<-tick.C
				for n%50 == 0 && backlog() > 100 && ctx.Err() == nil {
					<-tick.C
				}
				id := fmt.Sprint(rand.IntN(ids))
				src.set(id, fmt.Sprint("v", wr, ".", n+1)) // the committed write
				key, _ := fam.Key(map[string]string{"id": id})
				if _, err := producer.DeleteKeys(context.Background(), key); err != nil {
					failures.Add(1)
					continue
				}
				writes.Add(1)
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				get(ctx, fmt.Sprint(rand.IntN(ids)))
			}
		})
	}
	start := time.Now()
	a := newAuditor(t, rdb, audit.Config{Sample: ids, RecheckAfter: keyspec.DefaultRecheckAfter})
	var reps []audit.Report
	for range 3 {
		rep, err := a.Audit(t.Context(), audit.Check{Family: fam, Source: src})
		require.NoError(t, err)
		reps = append(reps, rep)
	}
	stop()
	wg.Wait()
	took := time.Since(start)
	require.Zero(t, failures.Load(), "enqueue failed")
	require.Positive(t, writes.Load())
	sampled, inFlight := 0, 0
	for _, rep := range reps {
		require.Zero(t, rep.Inconsistent, "%+v", rep)
		sampled += rep.Sampled
		inFlight += rep.InFlight
	}
	require.Positive(t, sampled)
	t.Logf("%d writes in %s (%.0f/s) through enqueue and a worker; %d keys sampled, %d in flight at the first look",
		writes.Load(), took.Round(time.Millisecond), float64(writes.Load())/took.Seconds(), sampled, inFlight)
}
