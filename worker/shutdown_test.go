package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

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
