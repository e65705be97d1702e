package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file owns the checkpoint of a family delete: its key, its fields,
// the format of a node's entry, and every read and write of it (begin,
// save, finish, force, progress). The node scan (family_scan.go) and the
// task handler (delete_family.go) go through these functions only, and the
// Lua scripts get the field names as arguments, so each name is spelled
// once, here.

// checkpointKey names the hash, in the queue Redis, that holds the SCAN
// cursor of each cache node for one family delete. A retry of the task, or a
// continuation of it, resumes where the last run stopped instead of
// rescanning a huge keyspace from zero.
func checkpointKey(scanID string) string { return "invalidator:scan:{" + scanID + "}" }

// Fields of a checkpoint hash besides the per-node cursors. Node IDs are
// "standalone" or host:port, so they never start with '_'; FamilyDeleteProgress
// relies on that to tell the two apart.
const (
	fieldDeleted  = "_deleted"  // keys deleted so far, over every run of the scan
	fieldScanned  = "_scanned"  // keys SCAN returned, over every run, for progress displays
	fieldFinished = "_finished" // "1": the scan completed
	fieldForce    = "_force"    // "1": an operator lifted max_keys for this scan
	// fieldMode is the family mode the cursors and counts were made in. A
	// shadow scan only counted the keys behind its cursor, so a scan that
	// resumes in another mode must start over, not skip them.
	fieldMode = "_mode"
	// fieldTask is the ID of the task running the scan now (the first, or a
	// continuation), so a progress display can tell if it died.
	fieldTask = "_task"
)

// finishedCheckpointTTL is how long a finished scan's counts remain for a
// progress display to read.
const finishedCheckpointTTL = 10 * time.Minute

// cursorDone marks a node whose scan finished, in a checkpoint entry.
const cursorDone = "done"

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

// beginScript opens a run of a scan on its checkpoint in one round trip. A
// checkpoint without a mode was written by an older build, which may have
// scanned in shadow mode, so it is not trusted either.
var beginScript = redis.NewScript(beginLua)

const beginLua = `
-- KEYS[1] -> checkpoint hash of one family delete (invalidator:scan:{id})
-- ARGV[1] -> the run's family mode; ARGV[2] -> the run's task id
-- ARGV[3] -> TTL of the hash in milliseconds
-- ARGV[4], ARGV[5], ARGV[6] -> the names of the mode, force and task fields
-- Output: {was, field, value, ...}: the mode the hash held ("?" when it
--         held none; ARGV[1] when there was no hash), then the hash as
--         this run starts from. If it held another mode, or none, its
--         cursors and counts are dropped first (an operator's force field
--         stays). The task and mode fields are set to this run.
local was = redis.call('HGET', KEYS[1], ARGV[4])
if not was then
  if redis.call('EXISTS', KEYS[1]) == 1 then was = '?' else was = ARGV[1] end
end
if was ~= ARGV[1] then
  local force = redis.call('HGET', KEYS[1], ARGV[5])
  redis.call('DEL', KEYS[1])
  if force then
    redis.call('HSET', KEYS[1], ARGV[5], force)
  end
end
redis.call('HSET', KEYS[1], ARGV[6], ARGV[2], ARGV[4], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, was)
return out
`

// beginScan runs beginScript and returns the checkpoint the run starts
// from and the mode it held before.
func (w *Worker) beginScan(ctx context.Context, ck, mode, taskID string) (map[string]string, string, error) {
	res, err := beginScript.Run(ctx, w.cfg.Queue, []string{ck}, mode, taskID, w.cfg.CheckpointTTL.Milliseconds(),
		fieldMode, fieldForce, fieldTask).StringSlice()
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
var saveScript = redis.NewScript(saveLua)

const saveLua = `
-- KEYS[1] -> checkpoint hash of one family delete (invalidator:scan:{id})
-- ARGV[1] -> the saver's family mode
-- ARGV[2] -> node id; ARGV[3] -> its checkpoint ("runid mode cursor")
-- ARGV[4] -> keys scanned; ARGV[5] -> keys deleted (or counted, in shadow)
-- ARGV[6] -> TTL of the hash in milliseconds
-- ARGV[7], ARGV[8], ARGV[9] -> the names of the mode, scanned and deleted fields
-- Output: 1 if saved; 0 if the hash holds another mode (nothing written)
local m = redis.call('HGET', KEYS[1], ARGV[7])
if m and m ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3], ARGV[8], ARGV[4], ARGV[9], ARGV[5], ARGV[7], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
`

// errModeChanged stops a scan whose checkpoint was taken over by a scan in
// another mode; the task fails and its retry starts in the current mode.
var errModeChanged = errors.New("the family's mode changed while the scan ran")

// saveCheckpoint stores one node's cursor and the scan's totals. The deleted
// total may lag by the pages since the last save; it is used for max_keys,
// which a crash thus loosens by at most that much, and with the scanned
// count for progress displays (FamilyDeleteProgress).
func (w *Worker) saveCheckpoint(ctx context.Context, ck, nodeID string, cp checkpoint, scanned, deleted int64) error {
	ok, err := saveScript.Run(ctx, w.cfg.Queue, []string{ck}, cp.mode, nodeID, cp.String(), scanned, deleted,
		w.cfg.CheckpointTTL.Milliseconds(), fieldMode, fieldScanned, fieldDeleted).Int()
	if err != nil {
		return fmt.Errorf("save scan checkpoint %s: %w", ck, err)
	}
	if ok == 0 {
		return fmt.Errorf("save scan checkpoint %s: %w", ck, errModeChanged)
	}
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

// ForceFamilyDelete lifts max_keys for the family delete scan scanID, so
// that the next run of a task of it (one stopped at max_keys, or its
// continuation) finishes the scan from the kept cursor. A task's scan is
// tasks.ScanID of its ID and headers. The CLI's "dead retry --force" calls
// it before retrying the task.
func ForceFamilyDelete(ctx context.Context, queue redis.UniversalClient, scanID string, ttl time.Duration) error {
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
