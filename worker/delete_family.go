package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// cursorDone marks a node whose scan finished, in a checkpoint.
const cursorDone = "done"

// errPaused stops a node's scan at the soft deadline.
var errPaused = errors.New("paused at soft deadline")

// checkpointKey names the hash, in the queue Redis, that holds the SCAN
// cursor per cache node for one family-delete task. It is keyed by task ID,
// so a retry of the same task (after a timeout or a crash) resumes where the
// last run stopped instead of rescanning a huge keyspace from zero.
func checkpointKey(taskID string) string { return "invalidator:scan:{" + taskID + "}" }

func (w *Worker) applyDeleteFamily(ctx context.Context, t tasks.DeleteFamily, taskID string, log *slog.Logger) error {
	fam, err := w.policy.Family(t.Family)
	if err != nil {
		return poison(err)
	}
	if fam.Strategy == keyspec.StrategyVersion {
		return poison(fmt.Errorf("family %q uses the version strategy: bump its version instead of deleting by pattern", fam.Name))
	}
	pattern, err := fam.Pattern(t.Params)
	if err != nil {
		return poison(err)
	}
	cache, err := w.target(t.Target)
	if err != nil {
		return err
	}
	log = log.With("family", fam.Name, "pattern", pattern)

	// Stop a little before the task's deadline with the cursor saved, rather
	// than be killed mid-batch and count a failure.
	softDeadline := time.Time{}
	if d, ok := ctx.Deadline(); ok {
		reserve := min(defaultScanSliceReserve, time.Until(d)/10)
		softDeadline = d.Add(-reserve)
	}
	ck := checkpointKey(taskID)
	var scanned, deleted atomic.Int64
	var paused atomic.Bool
	scanNode := func(ctx context.Context, node redis.UniversalClient, nodeID string) error {
		cursor, err := w.loadCursor(ctx, ck, nodeID)
		if err != nil || cursor == cursorDone {
			return err
		}
		var cur uint64
		if cursor != "" {
			if _, err := fmt.Sscan(cursor, &cur); err != nil {
				cur = 0 // a garbled checkpoint costs a rescan, never a skip
			}
		}
		for {
			keys, next, err := node.Scan(ctx, cur, pattern, int64(w.cfg.ScanCount)).Result()
			if err != nil {
				return fmt.Errorf("scan node %s at cursor %d: %w", nodeID, cur, err)
			}
			scanned.Add(int64(len(keys)))
			if err := w.throttle(ctx, len(keys)); err != nil {
				return err
			}
			n, err := unlink(ctx, node, keys, w.cfg.DeleteChunk)
			if err != nil {
				return fmt.Errorf("node %s: %w", nodeID, err)
			}
			deleted.Add(n)
			// The cursor is saved only after the keys it passed are gone.
			state := fmt.Sprint(next)
			if next == 0 {
				state = cursorDone
			}
			if err := w.saveCursor(ctx, ck, nodeID, state); err != nil {
				return err
			}
			if next == 0 {
				return nil
			}
			cur = next
			if !softDeadline.IsZero() && w.now().After(softDeadline) {
				paused.Store(true)
				return errPaused
			}
		}
	}

	start := time.Now()
	if cc, ok := cache.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return scanNode(ctx, clusterNode{node}, node.Options().Addr)
		})
	} else {
		err = scanNode(ctx, cache, "standalone")
	}
	attrs := []any{"scanned", scanned.Load(), "deleted", deleted.Load(), "took", time.Since(start).String()}
	if paused.Load() && (err == nil || errors.Is(err, errPaused)) {
		log.Info("family delete paused at the task deadline; continuing from checkpoint", attrs...)
		return &progressError{msg: fmt.Sprintf("delete family %q: paused after %d keys scanned, resuming from checkpoint", fam.Name, scanned.Load())}
	}
	if err != nil {
		return fmt.Errorf("delete family %q (pattern %q): %w", fam.Name, pattern, err)
	}
	if err := w.cfg.Queue.Del(ctx, ck).Err(); err != nil {
		// The family is gone; a leftover checkpoint only expires later.
		log.Warn("could not remove scan checkpoint", "key", ck, "err", err)
	}
	log.Info("family deleted", attrs...)
	return nil
}

func (w *Worker) loadCursor(ctx context.Context, ck, nodeID string) (string, error) {
	v, err := w.cfg.Queue.HGet(ctx, ck, nodeID).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("load scan checkpoint %s: %w", ck, err)
	}
	return v, nil
}

func (w *Worker) saveCursor(ctx context.Context, ck, nodeID, state string) error {
	pipe := w.cfg.Queue.TxPipeline()
	pipe.HSet(ctx, ck, nodeID, state)
	pipe.PExpire(ctx, ck, w.cfg.CheckpointTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("save scan checkpoint %s: %w", ck, err)
	}
	return nil
}

// throttle waits for the family rate limit, if one is set.
func (w *Worker) throttle(ctx context.Context, n int) error {
	if w.limiter == nil {
		return nil
	}
	for n > 0 {
		step := min(n, w.limiter.Burst())
		if err := w.limiter.WaitN(ctx, step); err != nil {
			return fmt.Errorf("rate limit: %w", err)
		}
		n -= step
	}
	return nil
}
