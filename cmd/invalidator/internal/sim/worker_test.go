package sim_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/sim"
	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/tasks"
	"github.com/invalidator/invalidator/worker"
)

// A started worker applies an enqueued delete; Stop shuts it down.
func TestStartWorker(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	require.NoError(t, rdb.Set(t.Context(), "k", "v", 0).Err())
	r, err := sim.StartWorker(t.Context(), worker.Config{Queue: rdb})
	require.NoError(t, err)
	enqueueDelete(t, rdb, "k")
	require.Eventually(t, func() bool { return rdb.Exists(context.Background(), "k").Val() == 0 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, r.Stop())
	<-r.Done()
}

// WrapHandler puts a handler around the worker's: it sees each task, and
// the worker's own handler still applies it.
func TestStartWorkerWrapHandler(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	require.NoError(t, rdb.Set(t.Context(), "k", "v", 0).Err())
	seen := make(chan string, 10)
	r, err := sim.StartWorker(t.Context(), worker.Config{Queue: rdb}, sim.WrapHandler(func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
			seen <- task.Type()
			return next.ProcessTask(ctx, task)
		})
	}))
	require.NoError(t, err)
	enqueueDelete(t, rdb, "k")
	require.Equal(t, tasks.KindDeleteKeys, <-seen)
	require.Eventually(t, func() bool { return rdb.Exists(context.Background(), "k").Val() == 0 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, r.Stop())
}

// A config the worker refuses is StartWorker's error.
func TestStartWorkerRefusesConfig(t *testing.T) {
	t.Parallel()
	_, err := sim.StartWorker(t.Context(), worker.Config{})
	var ce *worker.ConfigError
	require.ErrorAs(t, err, &ce)
}

func enqueueDelete(t *testing.T, rdb redis.UniversalClient, key string) {
	t.Helper()
	c, err := enqueue.New(rdb, enqueue.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.DeleteKeys(t.Context(), key)
	require.NoError(t, err)
}
