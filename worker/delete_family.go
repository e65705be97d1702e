package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
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
	//
	// A version family's data keys hang off its version keys: deleting
	// the version keys invalidates every entity they name, as a bump of
	// each would (the next bump or read restarts above every version
	// handed out). invalidator cdc asks for it on a TRUNCATE.
	match, err := fam.DeleteMatcher(t.Params)
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
	event := at.Headers()[tasks.HeaderEvent]
	log = log.With("family", fam.Name, "pattern", pattern)
	if event != "" {
		log = log.With("event", event)
	}
	scanID := tasks.ScanID(taskID, at.Headers())
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
	if cc, ok := cache.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return scanNode(ctx, clusterNode{node}, node.Options().Addr)
		})
	} else {
		err = scanNode(ctx, cache.client, "standalone")
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
	headers := map[string]string{tasks.HeaderScan: scanID}
	if e := at.Headers()[tasks.HeaderEvent]; e != "" {
		headers[tasks.HeaderEvent] = e
	}
	// A copy of the running task, on its own queue (already the shard) with
	// its own retry budget: no class decides those, so no NewEnvelope.
	info, err := w.enqueue(ctx, tasks.Envelope{
		Kind: at.Type(), Payload: at.Payload(), Queue: queue, MaxRetry: maxRetry, Timeout: class.Timeout, Headers: headers,
	})
	if err != nil {
		return "", err
	}
	return info.ID, nil
}
