package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/keyspec"
)

// errPaused stops a node's scan at the soft deadline.
var errPaused = errors.New("paused at soft deadline")

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
	mode         string // the family mode the scan runs in
	pattern      string
	match        *keyspec.Matcher // nil: every key the pattern matches is the family's
	ck           string
	softDeadline time.Time
	scanned      *atomic.Int64
	matched      *atomic.Int64 // keys of the family, of those scanned
	deleted      *atomic.Int64 // confirmed deletes, shared by the task's nodes; counts earlier runs too
	budget       *atomic.Int64 // deleted plus the pages in flight, for max_keys
	dryRun       bool          // shadow mode: count the keys, delete none
	maxKeys      int64         // 0: no cap
	progress     *scanProgress
	target       string // the cache target's name, for metrics
	family       string // for metrics

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
		keys := s.familyKeys(p.keys)
		s.matched.Add(int64(len(keys)))
		s.w.metrics.familyKeysKept(s.family, len(p.keys)-len(keys))
		n, err := s.deletePage(ctx, keys)
		if err != nil {
			return finish(err)
		}
		s.progress.add(int64(len(p.keys)), n)
		s.w.metrics.keysDeleted(s.target, n)
		s.safe = p.next
		if p.next == 0 {
			stop()
			return s.w.saveCheckpoint(ctx, s.ck, s.nodeID, checkpoint{runID: s.runID, mode: s.mode, done: true}, s.scanned.Load(), s.deleted.Load())
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

// familyKeys returns the keys of a SCAN page that are the family's: all
// of them without a matcher. It never changes page (a SCAN reply).
func (s *nodeScan) familyKeys(page []string) []string {
	if s.match == nil {
		return page
	}
	for i, k := range page {
		if s.match.Match(k) {
			continue
		}
		// The first key to drop: copy what is kept so far, then filter.
		keep := make([]string, i, len(page)-1)
		copy(keep, page[:i])
		for _, k := range page[i+1:] {
			if s.match.Match(k) {
				keep = append(keep, k)
			}
		}
		return keep
	}
	return page
}

// deletePage removes one page's keys, or counts them in a dry run, and
// returns how many it removed. Under a max_keys cap it reserves the page's
// keys first and refuses a page that would go past the cap, so the nodes of
// a cluster scanning in parallel never exceed it together.
func (s *nodeScan) deletePage(ctx context.Context, keys []string) (int64, error) {
	if s.dryRun {
		s.deleted.Add(int64(len(keys)))
		return 0, nil
	}
	want := int64(len(keys))
	if s.maxKeys > 0 && s.budget.Add(want) > s.maxKeys {
		s.budget.Add(-want)
		return 0, errMaxKeys
	}
	if s.maxKeys == 0 {
		s.budget.Add(want)
	}
	if err := s.w.throttle(ctx, s.softDeadline, len(keys)); err != nil {
		s.budget.Add(-want)
		return 0, err
	}
	n, err := unlink(ctx, s.node, keys, s.w.cfg.DeleteChunk)
	if err != nil {
		// Chunks that went through before the error are not counted; a
		// retry finds those keys gone and does not count them either.
		s.budget.Add(-want)
		return 0, fmt.Errorf("node %s: %w", s.nodeID, err)
	}
	// One step, so the budget never dips below what is deleted or in
	// flight. Keys that expired between SCAN and UNLINK are not counted.
	s.budget.Add(n - want)
	s.deleted.Add(n)
	return n, nil
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
	if err := s.w.saveCheckpoint(ctx, s.ck, s.nodeID, checkpoint{runID: s.runID, mode: s.mode, cursor: s.safe}, s.scanned.Load(), s.deleted.Load()); err != nil {
		return err
	}
	s.saved = s.safe
	return nil
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
