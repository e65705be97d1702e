package worker

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
)

func retiredShardsPolicy(t *testing.T, shards int) *keyspec.Policy {
	t.Helper()
	p, err := keyspec.Parse("p.yaml", []byte(`
version: 1
default_class: critical
classes:
  critical: {ttl: 1m, queue: rv-critical, shards: `+strconv.Itoa(shards)+`, second_delete: 1s}
  other: {ttl: 1m, queue: rv-other}
`))
	require.NoError(t, err)
	return p
}

// Changing a class's shard count renames its shard queues (3 -> 2 here).
// Tasks already in the old names (queued by a producer not yet restarted,
// an outbox row built earlier, a retry or a scheduled second delete) must
// still run: the worker serves the retired shard queues it finds registered.
func TestRetiredShardQueuesAreServed(t *testing.T) {
	ctx := context.Background()
	old, neu := retiredShardsPolicy(t, 3), retiredShardsPolicy(t, 2)
	rdb := redistest.Client(t)
	c, err := enqueue.New(rdb, enqueue.Config{Policy: old})
	require.NoError(t, err)
	require.NoError(t, rdb.Set(ctx, "user:1", "v", 0).Err())
	ids, err := c.DeleteKeys(ctx, "user:1")
	require.NoError(t, err)
	require.NoError(t, c.Close())
	// A queue that merely looks like a shard name but is no shard of any
	// class's queue must not be served.
	require.NoError(t, rdb.SAdd(ctx, "asynq:queues", "rv-critical.1.999999", "unrelated.0.1").Err())

	insp := asynq.NewInspectorFromRedisClient(rdb)
	retired := ""
	for _, q := range old.Classes["critical"].Queues() {
		if _, err := insp.GetTaskInfo(q, ids[0]); err == nil {
			retired = q
		}
	}
	require.NotEmpty(t, retired, "the task is in none of the old shard queues")
	require.NotContains(t, neu.Queues(), retired, "the old shard queue is still a current one; the test would prove nothing")

	w, err := New(Config{Queue: rdb, Policy: neu, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ShutdownTimeout: 2 * time.Second, NoRescue: true})
	require.NoError(t, err)
	runUntilCleanup(t, w)
	require.Eventually(t, func() bool { return rdb.Exists(ctx, "user:1").Val() == 0 }, 20*time.Second, 10*time.Millisecond,
		"the invalidation never ran: its shard queue %s is served by no worker", retired)

	qs := w.Queues()
	require.Equal(t, 1, qs[retired], "retired shard queue weight")
	require.NotContains(t, qs, "rv-critical.1.999999")
	require.NotContains(t, qs, "unrelated.0.1")
	for q, weight := range neu.QueueWeights() {
		require.Equal(t, weight, qs[q], "queue %s", q)
	}
	require.Same(t, w.Policy().Classes["critical"], w.state.Load().queueClass(retired), "tasks of a retired shard take its class's options")
}
