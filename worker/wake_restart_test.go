package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/tasks"
)

// restartBound is how long a task may wait after the queue Redis came
// back. A worker that polls after a failed wait starts it within a few poll
// intervals, and one that waits within a safety poll (1 s here); the bound
// is generous for a loaded machine, and well below the 30 s a worker would
// stay silent if a failed wait could leave it answering rounds "empty"
// without Redis (failedWaitPause) or blocked on a dead connection.
const restartBound = 15 * time.Second

// A queue Redis killed and restarted while an idle worker waits for a
// wake-up (BLPOP, the poll lock, or the polling after a failed wait) must
// not leave the worker silent: tasks enqueued after the restart, with a
// token and without one (a producer that pushes none), start within
// seconds. Six rounds keep the server down for 0 to 1.5 s, so the kill
// lands in different phases of the wait.
func TestWaiterAfterQueueRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	rdb := srv.NewClient()
	b := startWakeWorkerPolling(t, rdb, "invalidator-critical", "invalidator-standard", time.Second)
	ctx := context.Background()
	aq := asynq.NewClientFromRedisClient(rdb)
	for round := range 6 {
		before := b.waiter.Load().Stats()
		srv.Stop()
		time.Sleep(time.Duration(round) * 300 * time.Millisecond) // lands in different phases of the wait
		srv.Start()
		withToken := fmt.Sprintf("item:restart-%d-token", round)
		require.Eventually(t, func() bool { return rdb.Set(ctx, withToken, "v", 0).Err() == nil }, restartBound, 10*time.Millisecond)
		_, err := b.client.DeleteKeys(ctx, withToken)
		require.NoError(t, err)
		noToken := fmt.Sprintf("item:restart-%d-plain", round)
		require.NoError(t, rdb.Set(ctx, noToken, "v", 0).Err())
		payload, err := tasks.Marshal(tasks.DeleteKeys{Keys: []string{noToken}})
		require.NoError(t, err)
		_, err = aq.EnqueueContext(ctx, asynq.NewTask(tasks.KindDeleteKeys, payload), asynq.Queue("invalidator-standard"))
		require.NoError(t, err)
		start := time.Now()
		require.Eventually(t, func() bool { return rdb.Exists(ctx, withToken, noToken).Val() == 0 }, restartBound, time.Millisecond,
			"round %d: tasks enqueued after the queue Redis restarted did not start within %s: stats before %+v, now %+v",
			round, restartBound, before, b.waiter.Load().Stats())
		t.Logf("round %d: both tasks done %s after the enqueue", round, time.Since(start).Round(time.Millisecond))
	}
}
