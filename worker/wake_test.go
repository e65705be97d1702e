package worker

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/internal/wake"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// hugeSafetyPoll is the longest safety poll there is, far longer than a
// wake-up takes: a task that starts well before it was started by a
// wake-up, not by a poll.
const hugeSafetyPoll = wake.MaxSafetyPoll

// wakeBound is how long a test waits for a woken task, well inside
// hugeSafetyPoll; only a broken wake-up gets near it.
const wakeBound = hugeSafetyPoll / 2

type wakeBundle struct {
	rdb    redis.UniversalClient
	client *enqueue.Client
	waiter atomic.Pointer[wake.Waiter]
	stop   context.CancelFunc
	done   chan error
}

// startWakeWorker runs a worker with a huge safety poll on two queues and
// waits until its hook has seen a whole round of empty queues, that is,
// until the worker waits for a wake-up.
func startWakeWorker(t *testing.T) *wakeBundle {
	t.Helper()
	return startWakeWorkerOn(t, redistest.Client(t), "invalidator-critical", "invalidator-standard")
}

// startWakeWorkerOn is startWakeWorker on rdb, with the queues of the
// critical and the standard (default) class.
func startWakeWorkerOn(t *testing.T, rdb redis.UniversalClient, critical, standard string) *wakeBundle {
	t.Helper()
	return startWakeWorkerPolling(t, rdb, critical, standard, hugeSafetyPoll)
}

// startWakeWorkerPolling is startWakeWorkerOn with the given safety poll.
func startWakeWorkerPolling(t *testing.T, rdb redis.UniversalClient, critical, standard string, safetyPoll time.Duration) *wakeBundle {
	t.Helper()
	p, err := keyspec.Parse("p.yaml", []byte(`
version: 1
default_class: standard
classes:
  standard: {ttl: 1m, queue: `+standard+`}
  critical: {ttl: 1m, queue: `+critical+`}
`))
	require.NoError(t, err)
	b := &wakeBundle{rdb: rdb, done: make(chan error, 1)}
	b.client, err = enqueue.New(b.rdb, enqueue.Config{Policy: p})
	require.NoError(t, err)
	w, err := New(Config{Queue: b.rdb, Policy: p, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		PollInterval: time.Millisecond, RetryCheckInterval: 100 * time.Millisecond, SafetyPoll: safetyPoll,
		ShutdownTimeout: 2 * time.Second, NoRescue: true, onWaiter: func(wt *wake.Waiter) { b.waiter.Store(wt) }})
	require.NoError(t, err)
	require.Len(t, w.Queues(), 2)
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	go func() { b.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-b.done
	})
	require.Eventually(t, func() bool { wt := b.waiter.Load(); return wt != nil && wt.Stats().EmptyRound > 0 }, wakeBound, time.Millisecond,
		"the hook never saw a round in which every served queue came back empty: asynq's Dequeue (its script, keys or order) is not what internal/wake expects")
	require.Zero(t, b.waiter.Load().Stats().Foreign, "asynq's dequeue script differs from the copy in internal/wake")
	return b
}

// An idle worker with a huge safety poll starts a task at once after its
// enqueue, through the hook: asynq's dequeue round is recognised, the wait
// is woken by the producer's token, and the woken queue's task is handed
// to asynq. It fails, instead of passing by polling, if an asynq upgrade
// changes what the hook relies on.
func TestWaiterWithAsynq(t *testing.T) {
	t.Parallel()
	testWaiterWithAsynq(t, startWakeWorker(t), "invalidator-critical", "invalidator-standard", "item:")
}

// The same on a Redis Cluster: the queues' keys sit in other slots than the
// wake lists, so the woken dequeue runs on another node than the BLPOP.
func TestWaiterWithAsynqOnCluster(t *testing.T) {
	t.Parallel()
	prefix := redistest.Prefix(t)
	critical, standard := "wake-"+prefix+"critical", "wake-"+prefix+"standard"
	b := startWakeWorkerOn(t, redistest.Cluster(t), critical, standard)
	testWaiterWithAsynq(t, b, critical, standard, prefix)
}

func testWaiterWithAsynq(t *testing.T, b *wakeBundle, critical, standard, keyPrefix string) {
	ctx := context.Background()
	for i, q := range []string{critical, standard} {
		key := keyPrefix + q
		require.NoError(t, b.rdb.Set(ctx, key, "v", 0).Err())
		_, err := b.client.With(enqueue.Queue(q)).DeleteKeys(ctx, key)
		require.NoError(t, err)
		requireGoneWithin(t, b.rdb, key)
		st := b.waiter.Load().Stats()
		require.GreaterOrEqual(t, st.Handed, int64(i+1), "the task was not handed over by a wake-up: %+v", st)
		require.Zero(t, st.Timeouts, "a wait reached the safety poll: %+v", st)
	}
}

// A task asynq's forwarder moves to pending (a due retry, a scheduled
// task) wakes a worker too, although its producer pushed no token.
func TestWaiterWakesForForwardedTasks(t *testing.T) {
	t.Parallel()
	b := startWakeWorker(t)
	ctx := context.Background()
	key := "item:scheduled"
	require.NoError(t, b.rdb.Set(ctx, key, "v", 0).Err())
	payload, err := tasks.Marshal(tasks.DeleteKeys{Keys: []string{key}})
	require.NoError(t, err)
	// A plain asynq client: no wake-up token; only the forwarder's counts.
	aq := asynq.NewClientFromRedisClient(b.rdb)
	_, err = aq.EnqueueContext(ctx, asynq.NewTask(tasks.KindDeleteKeys, payload), asynq.Queue("invalidator-standard"), asynq.ProcessIn(time.Second))
	require.NoError(t, err)
	requireGoneWithin(t, b.rdb, key)
	st := b.waiter.Load().Stats()
	require.Positive(t, st.Forwarded, "%+v", st)
	require.Positive(t, st.Handed, "%+v", st)
	require.Zero(t, st.Timeouts, "%+v", st)
}

// Shutdown is not held up by a wait for a wake-up.
func TestWaiterShutdownIsPrompt(t *testing.T) {
	t.Parallel()
	b := startWakeWorker(t)
	b.stop()
	select {
	case err := <-b.done:
		require.NoError(t, err)
		b.done <- nil // for the cleanup
	case <-time.After(wakeBound):
		t.Fatal("Run did not return: the shutdown waits for the wake-up wait's safety poll")
	}
	require.Zero(t, b.waiter.Load().Stats().Timeouts)
}

func requireGoneWithin(t *testing.T, rdb redis.UniversalClient, key string) {
	t.Helper()
	require.Eventually(t, func() bool { return rdb.Exists(context.Background(), key).Val() == 0 }, wakeBound, time.Millisecond,
		"key %q still there: the idle worker was not woken", key)
}

// Tokens whose tasks are gone (a busy worker took the tasks without
// waiting) are dropped within the same wait: the worker does not go back
// to asynq's poll-and-sleep for each, and still starts the next task at
// once.
func TestWaiterDrainsStaleTokens(t *testing.T) {
	t.Parallel()
	b := startWakeWorker(t)
	ctx := context.Background()
	before := b.waiter.Load().Stats()
	require.NoError(t, wake.Push(ctx, b.rdb, map[string]int{"invalidator-standard": 5}))
	require.Eventually(t, func() bool { return b.waiter.Load().Stats().Stale == 5 }, wakeBound, time.Millisecond)
	st := b.waiter.Load().Stats()
	require.Equal(t, before.Dequeues, st.Dequeues, "a stale token ended the wait and asynq polled: %+v", st)
	key := "item:after-stale"
	require.NoError(t, b.rdb.Set(ctx, key, "v", 0).Err())
	_, err := b.client.DeleteKeys(ctx, key)
	require.NoError(t, err)
	requireGoneWithin(t, b.rdb, key)
	require.Positive(t, b.waiter.Load().Stats().Handed)
}

// A woken task keeps the lease asynq set before the wait; a safety poll
// near asynq's 30 s lease would hand tasks over with an expired lease,
// never acked and run again, so longer ones are refused.
func TestSafetyPollIsBoundedByTheLease(t *testing.T) {
	t.Parallel()
	p, err := keyspec.Parse("p.yaml", []byte("version: 1\ndefault_class: s\nclasses:\n  s: {ttl: 1m, queue: q}\n"))
	require.NoError(t, err)
	_, err = New(Config{Queue: redistest.Client(t), Policy: p, SafetyPoll: wake.MaxSafetyPoll + time.Second})
	require.ErrorContains(t, err, "SafetyPoll")
	_, err = wake.NewWaiter(wake.WaiterConfig{Queues: []string{"q"}, SafetyPoll: 30 * time.Second})
	require.Error(t, err)
}
