package worker

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/tasks"
)

func (w *Worker) applyDeleteKeys(ctx context.Context, t tasks.DeleteKeys, log *slog.Logger) error {
	if _, err := w.target(t.Target); err != nil {
		return err
	}
	// The batcher merges these keys with those of other running tasks and
	// returns once this task's own keys are gone.
	if err := w.batchers[t.Target].unlink(ctx, t.Keys); err != nil {
		return fmt.Errorf("delete %d keys: %w", len(t.Keys), err)
	}
	log.Debug("keys deleted", "keys", len(t.Keys))
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
