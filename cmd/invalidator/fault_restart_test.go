package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

const restartPolicy = `version: 1
classes:
  standard: {ttl: 1m, max_retry: 25, timeout: 5s, backoff_base: 100ms, backoff_max: 500ms}
families:
  item: {template: "item:{id}", class: standard}
`

// The queue Redis, with an append-only file fsynced on every write, is
// killed (SIGKILL) and restarted on the same port and data directory while
// a worker runs and producers keep enqueueing. Producers retry a failed
// enqueue, as the README asks; an enqueue that returned is acknowledged,
// so durable. The worker reconnects by itself, and every key whose
// invalidation was acknowledged ends up gone, including those of tasks that
// were still waiting in the queue at the kill; nothing reaches the dead
// letter.
//
// A kill can land after Redis wrote a Dequeue to its append-only file and
// before the reply left: the task is then active with nobody running it,
// and asynq alone gives it back only when its lease lapses, 30-90 s later.
// That stale window fails this test; the worker must rescue such tasks
// within seconds (issue 10, section 5).
func TestFaultQueueRestartWithAOF(t *testing.T) {
	t.Parallel()
	bin := testBinary(t)
	start := time.Now()
	queue := redistest.StartServerWith(t, redistest.ServerOptions{AppendOnly: true})
	cacheDB := redistest.NewDB(t)
	ctx := context.Background()
	policyPath := writePolicy(t, restartPolicy)
	policy, err := keyspec.Parse(policyPath, []byte(restartPolicy))
	require.NoError(t, err)

	const n, producers = 1000, 8
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("item:%d", i)
	}
	setAll(t, cacheDB.Client, keys)

	env := append(os.Environ(), envRedisURL+"="+queue.URL(), envPolicy+"="+policyPath)
	// One task at a time: the producers get ahead, so tasks wait in the
	// queue when it is killed.
	worker := startProc(t, bin, env, "worker", "--cache-redis", cacheDB.URL, "--concurrency", "1",
		"--poll-interval", "2ms", "--retry-check-interval", "50ms")
	waitLog(t, worker, "worker started")
	qc := queue.NewClient() // reconnects after the restart
	// One task per key (no coalescing): the backlog at the kill is counted
	// in tasks.
	client, err := enqueue.New(qc, enqueue.Config{Policy: policy, NoCoalesce: true})
	require.NoError(t, err)
	insp := asynq.NewInspectorFromRedisClient(qc)

	// Each producer invalidates its share of the keys one by one, retrying
	// an enqueue until it is acknowledged.
	var acked, failed, ackedAfterRestart atomic.Int64
	var restarted atomic.Bool
	var wg sync.WaitGroup
	stop := time.Now().Add(60 * time.Second) // bounds a broken run
	quit := make(chan struct{})              // a failed test stops the producers
	t.Cleanup(func() { close(quit) })
	errs := make(chan error, producers)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < n; i += producers {
				for {
					select {
					case <-quit:
						return
					default:
					}
					if time.Now().After(stop) {
						errs <- fmt.Errorf("enqueue of %s never acknowledged", keys[i])
						return
					}
					cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					_, err := client.DeleteKeys(cctx, keys[i])
					cancel()
					if err == nil {
						acked.Add(1)
						if restarted.Load() {
							ackedAfterRestart.Add(1)
						}
						break
					}
					failed.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}

	// Kill once the worker is busy and tasks wait behind it.
	var pendingAtKill int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		info, err := insp.GetQueueInfo("invalidator-standard")
		if err == nil && info.Pending >= 100 && existing(t, cacheDB.Client, keys...) < n {
			pendingAtKill = info.Pending
			break
		}
		require.True(t, time.Now().Before(deadline), "no backlog built up (acked %d); worker logs:\n%s", acked.Load(), worker.logs)
	}
	queue.Stop()
	killed := time.Now()
	ackedAtKill := acked.Load()
	// Down until every producer has seen its enqueue fail.
	for deadline := time.Now().Add(30 * time.Second); failed.Load() < producers; time.Sleep(2 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "enqueues kept succeeding with the queue Redis down")
	}
	queue.Start()
	restarted.Store(true)
	down := time.Since(killed)

	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, n, acked.Load())
	require.Positive(t, ackedAfterRestart.Load(), "the test meant enqueues to go on after the restart")
	for deadline := time.Now().Add(30 * time.Second); existing(t, cacheDB.Client, keys...) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			var left []string
			for _, k := range keys {
				if existing(t, cacheDB.Client, k) > 0 {
					left = append(left, k)
				}
			}
			active, _ := insp.ListActiveTasks("invalidator-standard")
			var act []string
			for _, ti := range active {
				task, _ := tasks.Unmarshal(ti.Type, ti.Payload)
				act = append(act, fmt.Sprintf("%s %v", ti.ID, task))
			}
			t.Fatalf("keys of acknowledged invalidations still cached: %v; active tasks: %v "+
				"(a task that is active with nobody running it was dequeued as the queue Redis died, "+
				"and waits for asynq's lease recovery, 30-90 s); worker logs:\n%s", left, act, worker.logs)
		}
	}
	gone := time.Since(killed)
	// Duplicates (an enqueue whose reply was lost, then retried) may still
	// wait; they find their keys gone. A task left active with nobody
	// running it (dequeued as the queue Redis died, or acknowledged while
	// it was down: asynq v0.26 retries a failed acknowledgement with a
	// context it has already cancelled) is the rescuer's: it must not wait
	// for asynq's 30-90 s lease recovery, so the queue drains fully.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		info, err := insp.GetQueueInfo("invalidator-standard")
		require.NoError(t, err)
		require.Zero(t, info.Archived, "dead letter: %+v", info)
		if info.Pending+info.Scheduled+info.Retry+info.Active == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "queue not drained: %+v; worker logs:\n%s", info, worker.logs)
	}
	require.Empty(t, binDeadList(t, bin, env))
	select {
	case err := <-worker.exited:
		t.Fatalf("the worker exited: %v; logs:\n%s", err, worker.logs)
	default:
	}
	t.Logf("killed with %d tasks pending and %d of %d enqueues acknowledged; down %s, %d enqueues failed meanwhile; "+
		"every key gone %s after the kill; whole test %s", pendingAtKill, ackedAtKill, n, down.Round(time.Millisecond),
		failed.Load(), gone.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
