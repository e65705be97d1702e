package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// scanHeader is the task header that names the checkpoint a continuation
// task shares with the task it continues.
const scanHeader = "invalidator-scan"

// cursorDone marks a node whose scan finished, in a checkpoint.
const cursorDone = "done"

// errPaused stops a node's scan at the soft deadline.
var errPaused = errors.New("paused at soft deadline")

// checkpointKey names the hash, in the queue Redis, that holds the SCAN
// cursor of each cache node for one family delete. A retry of the task, or a
// continuation of it, resumes where the last run stopped instead of
// rescanning a huge keyspace from zero.
func checkpointKey(scanID string) string { return "invalidator:scan:{" + scanID + "}" }

// checkpoint is one node's entry: the node's run_id and the cursor. A SCAN
// cursor is only meaningful to the process that issued it (Redis seeds its
// hash function at start-up), so after a restart or failover the scan
// starts again from zero rather than skip keys.
type checkpoint struct {
	runID  string
	cursor uint64
	done   bool
}

func (c checkpoint) String() string {
	if c.done {
		return c.runID + " " + cursorDone
	}
	return c.runID + " " + strconv.FormatUint(c.cursor, 10)
}

func parseCheckpoint(s string) (checkpoint, bool) {
	runID, rest, ok := strings.Cut(s, " ")
	if !ok || runID == "" {
		return checkpoint{}, false
	}
	if rest == cursorDone {
		return checkpoint{runID: runID, done: true}, true
	}
	cur, err := strconv.ParseUint(rest, 10, 64)
	if err != nil {
		return checkpoint{}, false
	}
	return checkpoint{runID: runID, cursor: cur}, true
}

func (w *Worker) applyDeleteFamily(ctx context.Context, t tasks.DeleteFamily, at *asynq.Task, taskID string, log *slog.Logger) error {
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
	scanID := taskID
	if h := at.Headers()[scanHeader]; h != "" {
		scanID = h
	}
	log = log.With("family", fam.Name, "pattern", pattern)

	// Stop a little before the task's deadline with the cursor saved, and
	// continue in a new task, rather than be killed mid-batch and count a
	// failure.
	softDeadline := time.Time{}
	if d, ok := ctx.Deadline(); ok {
		reserve := min(defaultScanSliceReserve, time.Until(d)/10)
		softDeadline = d.Add(-reserve)
	}
	ck := checkpointKey(scanID)
	var scanned, deleted atomic.Int64
	scanNode := func(ctx context.Context, node redis.UniversalClient, nodeID string) error {
		runID, err := serverRunID(ctx, node)
		if err != nil {
			return fmt.Errorf("node %s: %w", nodeID, err)
		}
		cp, err := w.loadCheckpoint(ctx, ck, nodeID)
		if err != nil {
			return err
		}
		var cur uint64
		if cp.runID == runID {
			if cp.done {
				return nil
			}
			cur = cp.cursor
		}
		for {
			keys, next, err := node.Scan(ctx, cur, pattern, int64(w.cfg.ScanCount)).Result()
			if err != nil {
				return fmt.Errorf("scan node %s at cursor %d: %w", nodeID, cur, err)
			}
			scanned.Add(int64(len(keys)))
			if err := w.throttle(ctx, softDeadline, len(keys)); err != nil {
				return err
			}
			n, err := unlink(ctx, node, keys, w.cfg.DeleteChunk)
			if err != nil {
				return fmt.Errorf("node %s: %w", nodeID, err)
			}
			deleted.Add(n)
			// The cursor is saved only after the keys it passed are gone.
			if err := w.saveCheckpoint(ctx, ck, nodeID, checkpoint{runID: runID, cursor: next, done: next == 0}); err != nil {
				return err
			}
			if next == 0 {
				return nil
			}
			cur = next
			if !softDeadline.IsZero() && w.now().After(softDeadline) {
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
	if errors.Is(err, errPaused) {
		next, cerr := w.continueScan(ctx, fam, at, scanID)
		if cerr != nil {
			// The task fails and retries from the same checkpoint.
			return fmt.Errorf("delete family %q: paused at the task deadline, but enqueueing its continuation failed: %w", fam.Name, cerr)
		}
		log.Info("family delete paused at the task deadline; a continuation task resumes from the checkpoint",
			append(attrs, "continuation", next)...)
		return nil
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

// continueScan enqueues a copy of a paused family delete that shares its
// checkpoint. The copy gets a fresh retry budget: a long scan is many short
// slices, not one task that spends its retries on timeouts.
func (w *Worker) continueScan(ctx context.Context, fam *keyspec.Family, at *asynq.Task, scanID string) (string, error) {
	class := w.policy.ClassOf(fam)
	queue, ok := asynq.GetQueueName(ctx)
	if !ok {
		queue = class.Queue
	}
	maxRetry, ok := asynq.GetMaxRetry(ctx)
	if !ok {
		maxRetry = class.MaxRetry
	}
	if c, ok := w.classOf[queue]; ok {
		class = c
	}
	opts := []asynq.Option{asynq.Queue(queue), asynq.MaxRetry(maxRetry)}
	if class.Timeout > 0 {
		opts = append(opts, asynq.Timeout(class.Timeout))
	}
	task := asynq.NewTaskWithHeaders(at.Type(), at.Payload(), map[string]string{scanHeader: scanID})
	info, err := w.aq.EnqueueContext(ctx, task, opts...)
	if err != nil {
		return "", err
	}
	return info.ID, nil
}

// serverRunID identifies the Redis process behind node.
func serverRunID(ctx context.Context, node redis.UniversalClient) (string, error) {
	info, err := node.Info(ctx, "server").Result()
	if err != nil {
		return "", fmt.Errorf("read run_id: %w", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
			return v, nil
		}
	}
	return "", errors.New("read run_id: INFO server has no run_id")
}

func (w *Worker) loadCheckpoint(ctx context.Context, ck, nodeID string) (checkpoint, error) {
	v, err := w.cfg.Queue.HGet(ctx, ck, nodeID).Result()
	if errors.Is(err, redis.Nil) {
		return checkpoint{}, nil
	}
	if err != nil {
		return checkpoint{}, fmt.Errorf("load scan checkpoint %s: %w", ck, err)
	}
	cp, ok := parseCheckpoint(v)
	if !ok {
		return checkpoint{}, nil // a garbled checkpoint costs a rescan, never a skip
	}
	return cp, nil
}

func (w *Worker) saveCheckpoint(ctx context.Context, ck, nodeID string, cp checkpoint) error {
	pipe := w.cfg.Queue.TxPipeline()
	pipe.HSet(ctx, ck, nodeID, cp.String())
	pipe.PExpire(ctx, ck, w.cfg.CheckpointTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("save scan checkpoint %s: %w", ck, err)
	}
	return nil
}

// throttle waits for the family rate limit, if one is set. A wait that would
// run past the soft deadline pauses the scan instead of failing the task.
func (w *Worker) throttle(ctx context.Context, softDeadline time.Time, n int) error {
	if w.limiter == nil {
		return nil
	}
	lctx := ctx
	if !softDeadline.IsZero() {
		var cancel context.CancelFunc
		lctx, cancel = context.WithDeadline(ctx, softDeadline)
		defer cancel()
	}
	for n > 0 {
		step := min(n, w.limiter.Burst())
		if err := w.limiter.WaitN(lctx, step); err != nil {
			if ctx.Err() == nil && !softDeadline.IsZero() {
				return errPaused
			}
			return fmt.Errorf("rate limit: %w", err)
		}
		n -= step
	}
	return nil
}
