package worker

import (
	"cmp"
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

// checkpoint is one node's entry: the node's run_id, the family mode the
// scan ran in, and the cursor, as "runid mode cursor". A SCAN cursor is
// only meaningful to the process that issued it (Redis seeds its hash
// function at start-up), so after a restart or failover the scan starts
// again from zero rather than skip keys. Likewise a cursor of a shadow scan
// only counted the keys behind it, so a scan in another mode ignores it.
// Entries of an older layout do not parse and cost a rescan, never a skip.
type checkpoint struct {
	runID  string
	mode   string
	cursor uint64
	done   bool
}

func (c checkpoint) String() string {
	if c.done {
		return c.runID + " " + c.mode + " " + cursorDone
	}
	return c.runID + " " + c.mode + " " + strconv.FormatUint(c.cursor, 10)
}

func parseCheckpoint(s string) (checkpoint, bool) {
	f := strings.Split(s, " ")
	if len(f) != 3 || f[0] == "" || f[1] == "" {
		return checkpoint{}, false
	}
	if f[2] == cursorDone {
		return checkpoint{runID: f[0], mode: f[1], done: true}, true
	}
	cur, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		return checkpoint{}, false
	}
	return checkpoint{runID: f[0], mode: f[1], cursor: cur}, true
}

// Fields of a checkpoint hash besides the per-node cursors. Node IDs are
// "standalone" or host:port, so they never start with '_'.
const (
	fieldDeleted  = "_deleted"  // keys deleted so far, over every run of the scan
	fieldScanned  = "_scanned"  // keys SCAN returned in this run, for progress displays
	fieldFinished = "_finished" // "1": the scan completed

	// finishedCheckpointTTL is how long a finished scan's counts remain.
	finishedCheckpointTTL = 10 * time.Minute
	fieldForce            = "_force" // "1": an operator lifted max_keys for this scan
	// fieldMode is the family mode the cursors and counts were made in. A
	// shadow scan only counted the keys behind its cursor, so a scan that
	// resumes in another mode must start over, not skip them.
	fieldMode = "_mode"
	// fieldTask is the ID of the task running the scan now (the first, or a
	// continuation), so a progress display can tell if it died.
	fieldTask = "_task"
)

// errMaxKeys stops a scan that would delete more than its family's
// max_keys.
var errMaxKeys = errors.New("max_keys reached")

func (w *Worker) applyDeleteFamily(ctx context.Context, st *policyState, t tasks.DeleteFamily, at *asynq.Task, taskID string, log *slog.Logger) error {
	fam, err := st.policy.Family(t.Family)
	if err != nil {
		return poison(err)
	}
	// SCAN MATCH returns every key the glob matches, and a glob '*' takes
	// ':' too: the matcher keeps the delete to the family's keys where
	// the policy declares parameter values. Without declarations it would
	// reject nothing, and the scan skips it.
	var match *keyspec.Matcher
	if fam.Strategy == keyspec.StrategyVersion {
		// A version family's data keys hang off its version keys: deleting
		// the version keys invalidates every entity they name, as a bump
		// of each would (the next bump or read restarts above every
		// version handed out). invalidator cdc asks for it on a TRUNCATE.
		match, err = fam.VersionKeysMatcher(t.Params)
	} else {
		match, err = fam.Matcher(t.Params)
	}
	if err != nil {
		return poison(err)
	}
	pattern := match.Pattern()
	if !match.Filters() {
		match = nil
	}
	cache, err := w.target(t.Target)
	if err != nil {
		return err
	}
	event := at.Headers()[eventHeader]
	log = log.With("family", fam.Name, "pattern", pattern)
	if event != "" {
		log = log.With("event", event)
	}
	scanID := taskID
	if h := at.Headers()[scanHeader]; h != "" {
		scanID = h
	}
	ck := checkpointKey(scanID)
	if fam.Mode == keyspec.ModeOff {
		w.metrics.eventAction(event, fam.Name, actionOff)
		log.Debug("family is off: pattern delete skipped")
		w.finishCheckpoint(ctx, ck, string(keyspec.ModeOff), 0, 0, log)
		return nil
	}
	dryRun := fam.Mode == keyspec.ModeShadow
	mode := string(keyspec.ModeEnforce)
	if dryRun {
		mode = string(keyspec.ModeShadow)
	}

	// Stop a little before the task's deadline with the cursor saved, and
	// continue in a new task, rather than be killed mid-batch and count a
	// failure.
	softDeadline := time.Time{}
	if d, ok := ctx.Deadline(); ok {
		reserve := min(defaultScanSliceReserve, time.Until(d)/10)
		softDeadline = d.Add(-reserve)
	}
	saved, was, err := w.beginScan(ctx, ck, mode, taskID)
	if err != nil {
		return err
	}
	if was != mode {
		log.Info("family mode changed since the scan began (or unknown); scanning again from the start", "was", was, "now", mode)
	}
	maxKeys := int64(fam.MaxKeys)
	if saved[fieldForce] == "1" || dryRun {
		maxKeys = 0
	}
	// scanned counts the keys SCAN returned, deleted the confirmed deletes
	// (or, in shadow mode, the family's keys); budget adds the keys of
	// pages being deleted, for max_keys. matched counts the family's keys
	// among those scanned in this run, for the log: only they are deleted,
	// counted and charged.
	var scanned, matched, deleted, budget atomic.Int64
	baseDeleted, _ := strconv.ParseInt(saved[fieldDeleted], 10, 64)
	baseScanned, _ := strconv.ParseInt(saved[fieldScanned], 10, 64)
	deleted.Store(baseDeleted)
	budget.Store(baseDeleted)
	scanned.Store(baseScanned)
	progress := w.metrics.scanStarted(fam.Name)
	defer progress.done()
	scanNode := func(ctx context.Context, node redis.UniversalClient, nodeID string) error {
		runID, err := serverRunID(ctx, node)
		if err != nil {
			return fmt.Errorf("node %s: %w", nodeID, err)
		}
		s := &nodeScan{w: w, node: node, nodeID: nodeID, runID: runID, mode: mode, pattern: pattern, match: match, ck: ck,
			softDeadline: softDeadline, scanned: &scanned, matched: &matched, deleted: &deleted, budget: &budget,
			dryRun: dryRun, maxKeys: maxKeys, progress: progress, target: t.Target, family: fam.Name}
		// A garbled checkpoint costs a rescan, never a skip.
		if cp, ok := parseCheckpoint(saved[nodeID]); ok && cp.runID == runID && cp.mode == mode {
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
	verb := "deleted"
	if dryRun {
		verb = "would_delete"
	}
	attrs := []any{"scanned", scanned.Load(), verb, deleted.Load(), "took", time.Since(start).String()}
	if match != nil {
		attrs = append(attrs, "matched_this_run", matched.Load())
	}
	switch {
	case errors.Is(err, errPaused):
		next, cerr := w.continueScan(ctx, st, fam, at, scanID)
		if cerr != nil {
			// The task fails and retries from the same checkpoint.
			return fmt.Errorf("delete family %q: paused at the task deadline, but enqueueing its continuation failed: %w", fam.Name, cerr)
		}
		log.Info("family delete paused at the task deadline; a continuation task resumes from the checkpoint",
			append(attrs, "continuation", next)...)
		return nil
	case errors.Is(err, errMaxKeys):
		log.Error("family delete stopped at max_keys", append(attrs, "max_keys", fam.MaxKeys)...)
		return halt(fmt.Errorf("%w: family %q (pattern %q) stopped after deleting %d keys, because the next SCAN page would take it past max_keys %d; "+
			"its cursor is kept for %s. If that many keys is expected, resume it with 'invalidator dead retry --force %s'; otherwise check the parameters, or raise max_keys in the policy",
			errMaxKeys, fam.Name, pattern, deleted.Load(), fam.MaxKeys, keyspec.HumanDuration(w.cfg.CheckpointTTL), taskID))
	case err != nil:
		return fmt.Errorf("delete family %q (pattern %q): %w", fam.Name, pattern, err)
	}
	w.finishCheckpoint(ctx, ck, mode, scanned.Load(), deleted.Load(), log)
	if dryRun {
		w.metrics.eventAction(event, fam.Name, actionShadow)
		w.metrics.wouldDelete(event, fam.Name, int(deleted.Load()))
		log.Info("shadow mode: family delete would have deleted", attrs...)
		return nil
	}
	w.metrics.eventAction(event, fam.Name, actionPattern)
	// Event-driven deletes are routine and can be many a second; the
	// metrics count them. A delete asked for by name is worth a line.
	level := slog.LevelInfo
	if event != "" {
		level = slog.LevelDebug
	}
	log.Log(ctx, level, "family deleted", attrs...)
	return nil
}

// finishCheckpoint marks a scan finished with its final counts, and keeps
// them a little while so a progress display (enqueue family --wait) can
// read them.
func (w *Worker) finishCheckpoint(ctx context.Context, ck, mode string, scanned, deleted int64, log *slog.Logger) {
	pipe := w.cfg.Queue.TxPipeline()
	pipe.HSet(ctx, ck, fieldFinished, "1", fieldMode, mode, fieldScanned, scanned, fieldDeleted, deleted)
	pipe.PExpire(ctx, ck, finishedCheckpointTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		// The work is done; only a progress display misses the counts.
		log.Warn("could not mark scan checkpoint finished", "key", ck, "err", err)
	}
}

// ScanProgress is what FamilyDeleteProgress reads of a running family
// delete.
type ScanProgress struct {
	// Found is false when no checkpoint exists: the scan has not saved one
	// yet, or finished more than 10 minutes ago.
	Found bool
	// Finished is true once the scan has completed on every node.
	Finished bool
	// Mode is the family mode the scan runs in: "enforce", "shadow" (it
	// counts matches and deletes nothing) or "off" (it did nothing).
	Mode string
	// Task is the ID of the task running the scan now: the first, or its
	// latest continuation.
	Task string
	// Scanned counts the keys SCAN matched and Deleted the keys deleted
	// (in shadow mode: counted), over every run of the scan; a node
	// rescanned after a restart is counted again. Both are as of the last
	// checkpoint save (every 100ms). Only the family's keys are deleted
	// or counted: where the policy declares parameter values, a SCAN match
	// of another family's key is scanned and kept.
	Scanned, Deleted int64
	// Nodes and NodesDone count the cache masters with a cursor, and those
	// finished.
	Nodes, NodesDone int
}

// FamilyDeleteProgress reads the checkpoint of the family delete that the
// task with this ID started, for progress displays.
func FamilyDeleteProgress(ctx context.Context, queue redis.UniversalClient, taskID string) (ScanProgress, error) {
	h, err := queue.HGetAll(ctx, checkpointKey(taskID)).Result()
	if err != nil {
		return ScanProgress{}, fmt.Errorf("read scan progress of %s: %w", taskID, err)
	}
	var p ScanProgress
	p.Found = len(h) > 0
	p.Finished = h[fieldFinished] == "1"
	p.Mode, p.Task = h[fieldMode], h[fieldTask]
	p.Scanned, _ = strconv.ParseInt(h[fieldScanned], 10, 64)
	p.Deleted, _ = strconv.ParseInt(h[fieldDeleted], 10, 64)
	for k, v := range h {
		if strings.HasPrefix(k, "_") {
			continue
		}
		p.Nodes++
		if cp, ok := parseCheckpoint(v); ok && cp.done {
			p.NodesDone++
		}
	}
	return p, nil
}

// ForceFamilyDelete lifts max_keys for the family delete that the task
// with this ID and headers belongs to (a task stopped at max_keys, or its
// continuation), so that its next run finishes the scan from the kept
// cursor. The CLI's "dead retry --force" calls it before retrying the task.
func ForceFamilyDelete(ctx context.Context, queue redis.UniversalClient, taskID string, headers map[string]string, ttl time.Duration) error {
	scanID := taskID
	if h := headers[scanHeader]; h != "" {
		scanID = h
	}
	if ttl <= 0 {
		ttl = DefaultCheckpointTTL
	}
	ck := checkpointKey(scanID)
	pipe := queue.TxPipeline()
	pipe.HSet(ctx, ck, fieldForce, "1")
	pipe.PExpire(ctx, ck, ttl)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("lift max_keys for scan %s: %w", scanID, err)
	}
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

// continueScan enqueues a copy of a paused family delete that shares its
// checkpoint. The copy gets a fresh retry budget: a long scan is many short
// slices, not one task that spends its retries on timeouts.
func (w *Worker) continueScan(ctx context.Context, st *policyState, fam *keyspec.Family, at *asynq.Task, scanID string) (string, error) {
	class := st.policy.ClassOf(fam)
	queue, ok := asynq.GetQueueName(ctx)
	if !ok {
		queue = class.Queue
	}
	maxRetry, ok := asynq.GetMaxRetry(ctx)
	if !ok {
		maxRetry = class.MaxRetry
	}
	if c, ok := st.classOf[queue]; ok {
		class = c
	}
	opts := []asynq.Option{asynq.Queue(queue), asynq.MaxRetry(maxRetry)}
	if class.Timeout > 0 {
		opts = append(opts, asynq.Timeout(class.Timeout))
	}
	headers := map[string]string{scanHeader: scanID}
	if e := at.Headers()[eventHeader]; e != "" {
		headers[eventHeader] = e
	}
	task := asynq.NewTaskWithHeaders(at.Type(), at.Payload(), headers)
	info, err := w.enqueue(ctx, task, opts...)
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

// beginScript opens a run of a scan on its checkpoint in one round trip. A
// checkpoint without a mode was written by an older build, which may have
// scanned in shadow mode, so it is not trusted either.
var beginScript = redis.NewScript(`
-- KEYS[1] -> checkpoint hash of one family delete (invalidator:scan:{id})
-- ARGV[1] -> the run's family mode; ARGV[2] -> the run's task id
-- ARGV[3] -> TTL of the hash in milliseconds
-- Output: {was, field, value, ...}: the mode the hash held ("?" when it
--         held none; ARGV[1] when there was no hash), then the hash as
--         this run starts from. If it held another mode, or none, its
--         cursors and counts are dropped first (an operator's _force
--         stays). _task and _mode are set to this run.
local was = redis.call('HGET', KEYS[1], '_mode')
if not was then
  if redis.call('EXISTS', KEYS[1]) == 1 then was = '?' else was = ARGV[1] end
end
if was ~= ARGV[1] then
  local force = redis.call('HGET', KEYS[1], '_force')
  redis.call('DEL', KEYS[1])
  if force then
    redis.call('HSET', KEYS[1], '_force', force)
  end
end
redis.call('HSET', KEYS[1], '_task', ARGV[2], '_mode', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, was)
return out
`)

// beginScan runs beginScript and returns the checkpoint the run starts
// from and the mode it held before.
func (w *Worker) beginScan(ctx context.Context, ck, mode, taskID string) (map[string]string, string, error) {
	res, err := beginScript.Run(ctx, w.cfg.Queue, []string{ck}, mode, taskID, w.cfg.CheckpointTTL.Milliseconds()).StringSlice()
	if err != nil || len(res)%2 != 1 {
		return nil, "", fmt.Errorf("open scan checkpoint %s: %w", ck, cmp.Or(err, errors.New("malformed reply")))
	}
	saved := make(map[string]string, len(res)/2)
	for i := 1; i+1 < len(res); i += 2 {
		saved[res[i]] = res[i+1]
	}
	return saved, res[0], nil
}

// saveScript saves one node's cursor and the scan's totals, unless the
// checkpoint now belongs to a scan in another mode: a run still going in
// the old mode after a policy reload must not put its cursor or counts
// into the new mode's checkpoint.
var saveScript = redis.NewScript(`
-- KEYS[1] -> checkpoint hash of one family delete (invalidator:scan:{id})
-- ARGV[1] -> the saver's family mode
-- ARGV[2] -> node id; ARGV[3] -> its checkpoint ("runid mode cursor")
-- ARGV[4] -> keys scanned; ARGV[5] -> keys deleted (or counted, in shadow)
-- ARGV[6] -> TTL of the hash in milliseconds
-- Output: 1 if saved; 0 if the hash holds another mode (nothing written)
local m = redis.call('HGET', KEYS[1], '_mode')
if m and m ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3], '_scanned', ARGV[4], '_deleted', ARGV[5], '_mode', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
`)

// errModeChanged stops a scan whose checkpoint was taken over by a scan in
// another mode; the task fails and its retry starts in the current mode.
var errModeChanged = errors.New("the family's mode changed while the scan ran")

// saveCheckpoint stores one node's cursor and the scan's totals. The deleted
// total may lag by the pages since the last save; it is used for max_keys,
// which a crash thus loosens by at most that much, and with the scanned
// count for progress displays (FamilyDeleteProgress).
func (w *Worker) saveCheckpoint(ctx context.Context, ck, nodeID string, cp checkpoint, scanned, deleted int64) error {
	ok, err := saveScript.Run(ctx, w.cfg.Queue, []string{ck}, cp.mode, nodeID, cp.String(), scanned, deleted,
		w.cfg.CheckpointTTL.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("save scan checkpoint %s: %w", ck, err)
	}
	if ok == 0 {
		return fmt.Errorf("save scan checkpoint %s: %w", ck, errModeChanged)
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
