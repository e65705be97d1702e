package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

// A shutdown in the middle of a slow family delete hands the task back to
// its queue with its cursor saved; the next worker finishes it.
func TestShutdownHandsTaskBackAndNextWorkerResumes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	keys := make([]string, 3000)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d:profile", i)
	}
	set(t, b.rdb, keys...)
	id, err := b.client.DeleteFamily(ctx, "user_profile", nil)
	require.NoError(t, err)

	// A worker throttled to 500 keys/s needs ~6s; stop it after a moment.
	w, err := worker.New(worker.Config{Queue: b.rdb, Policy: b.policy, Logger: testLogger(t), PollInterval: time.Millisecond,
		ScanCount: 50, DeleteChunk: 50, FamilyRateLimit: 500, ShutdownTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	require.Eventually(t, func() bool { return count(t, b.rdb, keys...) < len(keys) }, 10*time.Second, time.Millisecond)
	stop()
	require.NoError(t, <-done)

	left := count(t, b.rdb, keys...)
	require.Positive(t, left, "the throttled worker finished before it was stopped; the test proves nothing")
	ti, err := b.insp.GetTaskInfo("invalidator-standard", id)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, ti.State, "an unfinished task must go back to its queue")
	require.Zero(t, ti.Retried, "a shutdown is not a failure")
	ck, err := b.rdb.Keys(ctx, "invalidator:scan:*").Result()
	require.NoError(t, err)
	require.Len(t, ck, 1, "the cursor must survive the shutdown")

	b.startWorker(t, nil)
	requireGone(t, b.rdb, keys...)
}

// A scan that needs several task timeouts finishes through continuations,
// even in a class with no retries at all: pauses are not failures.
func TestLongScanContinuesAcrossTimeouts(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	policy, err := keyspec.Parse("p.yaml", []byte(`
version: 1
classes:
  tight: {ttl: 1m, timeout: 1s, max_retry: 0}
families:
  item:
    template: "item:{id}"
    class: tight
`))
	require.NoError(t, err)
	b := &testBundle{rdb: rdb, policy: policy, insp: asynq.NewInspectorFromRedisClient(rdb)}
	b.client, err = enqueue.New(rdb, enqueue.Config{Policy: policy})
	require.NoError(t, err)
	keys := make([]string, 2500)
	for i := range keys {
		keys[i] = fmt.Sprintf("item:%d", i)
	}
	set(t, rdb, keys...)
	// 1000 keys/s (burst 1000) against a 1s timeout: at least two slices.
	b.startWorker(t, func(c *worker.Config) { c.FamilyRateLimit = 1000; c.ScanCount = 100; c.DeleteChunk = 100 })
	_, err = b.client.DeleteFamily(context.Background(), "item", nil)
	require.NoError(t, err)
	requireGone(t, rdb, keys...)
	info, err := b.insp.GetQueueInfo("invalidator-tight")
	require.NoError(t, err)
	require.Zero(t, info.Archived, "a paused scan must not reach the dead letter")
	require.GreaterOrEqual(t, info.ProcessedTotal, 2, "the scan was expected to take several slices")
}
