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
		s := &nodeScan{w: w, node: node, nodeID: nodeID, runID: runID, pattern: pattern, ck: ck,
			softDeadline: softDeadline, scanned: &scanned, deleted: &deleted}
		if cp.runID == runID {
			if cp.done {
				return nil
			}
			s.safe, s.saved = cp.cursor, cp.cursor
		}
		return s.run(ctx)
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

// scanAhead is how many SCAN pages a node's scanner may hold ready while
// the deleter is busy. One page is enough to keep the next SCAN on the wire
// during an UNLINK; more only buys memory.
const scanAhead = 1

// scanPage is one SCAN reply: the keys it matched and the cursor after it.
type scanPage struct {
	keys []string
	next uint64
}

// nodeScan deletes the family's keys on one node. A scanner goroutine runs
// one SCAN page ahead of the deleter, so a SCAN and the UNLINKs of the page
// before it are on the wire together. Only the deleter moves the checkpoint,
// and only to the cursor after a page whose keys are all confirmed gone:
// pages are deleted in scan order, so every key the cursor has passed is
// gone, and a crash costs a rescan of at most the pages since the last save,
// never a skipped key.
type nodeScan struct {
	w            *Worker
	node         redis.UniversalClient
	nodeID       string
	runID        string
	pattern      string
	ck           string
	softDeadline time.Time
	scanned      *atomic.Int64
	deleted      *atomic.Int64

	safe  uint64 // every key before this cursor is deleted
	saved uint64 // the cursor in the checkpoint
}

func (s *nodeScan) run(ctx context.Context) error {
	sctx, stop := context.WithCancel(ctx)
	pages := make(chan scanPage, scanAhead)
	var scanErr error // written before pages is closed
	go func() {
		defer close(pages)
		scanErr = s.scan(sctx, pages)
	}()
	// The scanner is stopped and waited for on every way out, so that it
	// never outlives the task.
	finish := func(err error) error {
		stop()
		for range pages {
		}
		return s.stopAt(ctx, err)
	}

	lastSave := time.Now()
	for p := range pages {
		s.scanned.Add(int64(len(p.keys)))
		if err := s.w.throttle(ctx, s.softDeadline, len(p.keys)); err != nil {
			return finish(err)
		}
		n, err := unlink(ctx, s.node, p.keys, s.w.cfg.DeleteChunk)
		if err != nil {
			return finish(fmt.Errorf("node %s: %w", s.nodeID, err))
		}
		s.deleted.Add(n)
		s.safe = p.next
		if p.next == 0 {
			stop()
			return s.w.saveCheckpoint(ctx, s.ck, s.nodeID, checkpoint{runID: s.runID, done: true})
		}
		// Saving every page would put a round trip to the queue Redis in
		// every page's path; every checkpointInterval costs a crash at most
		// that much rescanning.
		if time.Since(lastSave) >= s.w.cfg.checkpointInterval {
			if err := s.save(ctx); err != nil {
				return finish(err)
			}
			lastSave = time.Now()
		}
		if !s.softDeadline.IsZero() && s.w.now().After(s.softDeadline) {
			return finish(errPaused)
		}
	}
	// The scanner gave up before the last page.
	if scanErr == nil {
		scanErr = ctx.Err()
	}
	return finish(scanErr)
}

// scan sends the pages from s.safe on to pages until the cursor returns to
// zero, an error, or ctx ends.
func (s *nodeScan) scan(ctx context.Context, pages chan<- scanPage) error {
	cur := s.safe
	for {
		keys, next, err := s.node.Scan(ctx, cur, s.pattern, int64(s.w.cfg.ScanCount)).Result()
		if err != nil {
			return fmt.Errorf("scan node %s at cursor %d: %w", s.nodeID, cur, err)
		}
		select {
		case pages <- scanPage{keys: keys, next: next}:
		case <-ctx.Done():
			return ctx.Err()
		}
		if next == 0 {
			return nil
		}
		cur = next
	}
}

// stopAt saves the progress made since the last checkpoint on the way out
// of an unfinished scan, even when ctx was cancelled (a shutdown), so that
// the next run resumes there. At a pause the save must succeed: the
// continuation would otherwise rescan what this slice deleted, and it is
// cheaper to retry the task.
func (s *nodeScan) stopAt(ctx context.Context, err error) error {
	if s.safe == s.saved {
		return err
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkpointSaveTimeout)
	defer cancel()
	serr := s.save(sctx)
	if serr == nil {
		return err
	}
	if errors.Is(err, errPaused) {
		return serr
	}
	return errors.Join(err, serr)
}

func (s *nodeScan) save(ctx context.Context) error {
	if err := s.w.saveCheckpoint(ctx, s.ck, s.nodeID, checkpoint{runID: s.runID, cursor: s.safe}); err != nil {
		return err
	}
	s.saved = s.safe
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
