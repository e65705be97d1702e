package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

func (w *Worker) applyDeleteKeys(ctx context.Context, st *policyState, t tasks.DeleteKeys, at *asynq.Task, log *slog.Logger) error {
	cache, err := w.target(t.Target)
	if err != nil {
		return err
	}
	// The batcher merges these keys with those of other running tasks and
	// returns once this task's own keys are gone.
	if err := cache.batch.unlink(ctx, t.Keys); err != nil {
		return fmt.Errorf("delete %d keys: %w", len(t.Keys), err)
	}
	if debugOn(log) {
		log.Debug("keys deleted", "keys", len(t.Keys))
	}
	if at.Headers()[tasks.HeaderSecond] != "" {
		return nil
	}
	queue, _ := asynq.GetQueueName(ctx)
	return w.scheduleSecondDelete(ctx, st.policy, st.queueClass(queue), t.Keys, t.Target, log)
}

// scheduleSecondDelete enqueues a copy of a key delete that runs after the
// class's SecondDelete delay, for readers that do not use cacheaside leases:
// one that loaded a value before the write and stores it after the first
// delete loses it again. It is a mitigation with a window, not a guarantee.
// A failure fails the task, which retries the (idempotent) first delete too:
// the class asked for both.
func (w *Worker) scheduleSecondDelete(ctx context.Context, p *keyspec.Policy, class *keyspec.Class, keys []string, target string, log *slog.Logger) error {
	if class == nil || class.SecondDelete <= 0 || len(keys) == 0 {
		return nil
	}
	chunks, err := tasks.SplitKeys(keys)
	if err != nil {
		return fmt.Errorf("second delete: %w", err)
	}
	// asynq keeps schedule times in whole seconds and would run a task at
	// now+d truncated, up to a second early; rounding up keeps "at least d".
	at := time.Now().Add(class.SecondDelete)
	if t := at.Truncate(time.Second); !t.Equal(at) {
		at = t.Add(time.Second)
	}
	for _, chunk := range chunks {
		// No EnqueuedAt: the delay is deliberate and must not read as lag.
		dk := tasks.DeleteKeys{Keys: chunk, Target: target}
		e, err := tasks.NewEnvelope(p, class, dk, tasks.Overrides{}, map[string]string{tasks.HeaderSecond: "1"})
		if err != nil {
			return fmt.Errorf("second delete: %w", err)
		}
		e.ProcessAt = at
		if _, err := w.enqueue(ctx, e); err != nil {
			return fmt.Errorf("schedule second delete of %d keys in %s: %w", len(chunk), class.SecondDelete, err)
		}
	}
	log.Debug("second delete scheduled", "keys", len(keys), "in", class.SecondDelete.String())
	return nil
}

// unlink removes keys with pipelined multi-key UNLINKs of at most chunk keys
// and returns how many existed. Family scans use it per SCAN page; key
// deletes go through the batcher. On a Redis Cluster client the keys are first
// grouped by hash slot, because a multi-key command must not cross slots
// (CROSSSLOT); a node client (from ForEachMaster) of a cluster rejects it too,
// so grouping is done whenever the client may be a cluster member.
func unlink(ctx context.Context, c redis.UniversalClient, keys []string, chunk int) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	cmds, _ := unlinkCommands([]*deleteRequest{{keys: keys}}, mayBeCluster(c), chunk)
	pipe := c.Pipeline()
	unlinks := make([]*redis.IntCmd, len(cmds))
	for i, args := range cmds {
		unlinks[i] = pipe.Unlink(ctx, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("unlink: %w", err)
	}
	var n int64
	for _, cmd := range unlinks {
		n += cmd.Val()
	}
	return n, nil
}

// mayBeCluster reports whether c talks to a Redis Cluster. Node clients that
// ClusterClient.ForEachMaster hands out are plain *redis.Client values, so
// callers scanning nodes pass a clusterNode wrapper instead.
func mayBeCluster(c redis.UniversalClient) bool {
	switch c.(type) {
	case *redis.ClusterClient, clusterNode:
		return true
	}
	return false
}

// clusterNode marks a single master of a cluster.
type clusterNode struct{ *redis.Client }
