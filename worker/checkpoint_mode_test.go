package worker

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

func modePolicy(t *testing.T, mode string) *keyspec.Policy {
	t.Helper()
	p, err := keyspec.Parse("p.yaml", []byte(`
version: 1
classes:
  standard: {ttl: 1m}
families:
  item:
    template: "item:{shop}:{id}"
    class: standard
    mode: `+mode+`
`))
	require.NoError(t, err)
	return p
}

// slicedScan runs the family delete of one shop's items in two slices, as a
// long scan does: task-1 pauses after one page, task-2 continues it.
type slicedScan struct {
	t       *testing.T
	w       *Worker
	task    tasks.DeleteFamily
	payload []byte
}

func newSlicedScan(t *testing.T, w *Worker, shop string) *slicedScan {
	t.Helper()
	task := tasks.DeleteFamily{Family: "item", Params: map[string]string{"shop": shop}}
	payload, err := tasks.Marshal(task)
	require.NoError(t, err)
	return &slicedScan{t: t, w: w, task: task, payload: payload}
}

// pause runs task-1 with a clock that puts the soft deadline behind it, so
// it stops after one page with its cursor saved.
func (s *slicedScan) pause() {
	s.t.Helper()
	s.w.now = func() time.Time { return time.Now().Add(time.Hour) }
	defer func() { s.w.now = time.Now }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	require.NoError(s.t, s.w.applyDeleteFamily(ctx, s.w.state.Load(), s.task, asynq.NewTask(tasks.KindDeleteFamily, s.payload), "task-1", s.w.log))
}

// finish runs task-2, the continuation of task-1, under the current policy.
func (s *slicedScan) finish() {
	s.t.Helper()
	cont := asynq.NewTaskWithHeaders(tasks.KindDeleteFamily, s.payload, map[string]string{tasks.HeaderScan: "task-1"})
	require.NoError(s.t, s.w.applyDeleteFamily(context.Background(), s.w.state.Load(), s.task, cont, "task-2", s.w.log))
}

// A family delete that paused in shadow mode has a cursor whose keys were
// only counted. After the policy switches the family to enforce, the
// continuation must scan again from the start, not skip those keys.
func TestShadowCursorNotReusedAfterEnforce(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	family := fill(t, rdb, 5000, "item:s1:%d")
	w, err := New(Config{Queue: rdb, Policy: modePolicy(t, "shadow"), ScanCount: 100, Logger: quiet()})
	require.NoError(t, err)
	scan := newSlicedScan(t, w, "s1")

	scan.pause()
	require.Equal(t, len(family), CountExisting(t, rdb, family...), "shadow deleted keys")

	require.NoError(t, w.SetPolicy(modePolicy(t, "enforce")))
	scan.finish()
	p, err := FamilyDeleteProgress(ctx, rdb, "task-1")
	require.NoError(t, err)
	left := CountExisting(t, rdb, family...)
	require.Zero(t, left, "enforce-mode family delete reported success (progress %+v) but %d keys of the family are still cached", p, left)
}

// A checkpoint of an older build has no mode, and may have been a shadow
// scan's: after a rolling upgrade and a switch to enforce, the scan must
// start over, not resume from a cursor whose keys were only counted.
func TestLegacyCheckpointWithoutModeIsRescanned(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	family := fill(t, rdb, 5000, "item:s1:%d")
	w, err := New(Config{Queue: rdb, Policy: modePolicy(t, "shadow"), ScanCount: 100, Logger: quiet()})
	require.NoError(t, err)
	scan := newSlicedScan(t, w, "s1")

	scan.pause()
	// What an older worker wrote: no _mode or _task, node entries "runid cursor".
	ck := checkpointKey("task-1")
	cp, err := w.loadCheckpoint(ctx, ck, "standalone")
	require.NoError(t, err)
	require.NotZero(t, cp.cursor, "the shadow slice saved a cursor")
	require.NoError(t, rdb.HDel(ctx, ck, fieldMode, fieldTask).Err())
	require.NoError(t, rdb.HSet(ctx, ck, "standalone", cp.runID+" "+strconv.FormatUint(cp.cursor, 10)).Err())

	require.NoError(t, w.SetPolicy(modePolicy(t, "enforce")))
	scan.finish()
	left := CountExisting(t, rdb, family...)
	require.Zero(t, left, "legacy shadow checkpoint resumed as enforced: %d keys skipped", left)
}

// A shadow run of the same scan that is still going (its asynq lease
// expired and the task was recovered elsewhere, or a worker that has not
// reloaded the policy yet) must not save its cursor into the checkpoint an
// enforce run re-created, and a shadow cursor found there is not resumed.
func TestShadowSaveAfterModeResetIsRefused(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	family := fill(t, rdb, 5000, "item:s2:%d")
	w, err := New(Config{Queue: rdb, Policy: modePolicy(t, "enforce"), ScanCount: 100, Logger: quiet()})
	require.NoError(t, err)
	runID, err := serverRunID(ctx, rdb)
	require.NoError(t, err)
	scan := newSlicedScan(t, w, "s2")

	// Enforce slice 1 (mode reset happens here) pauses after one page.
	scan.pause()
	// A late save by a concurrent shadow run of the same scan: a cursor far
	// ahead (here: the cursor a full shadow SCAN reached near its end).
	var cur uint64
	for range 40 {
		_, next, err := rdb.Scan(ctx, cur, "item:s2:*", 100).Result()
		require.NoError(t, err)
		if next == 0 {
			break
		}
		cur = next
	}
	err = w.saveCheckpoint(ctx, checkpointKey("task-1"), "standalone", checkpoint{runID: runID, mode: "shadow", cursor: cur}, 4000, 4000)
	require.ErrorIs(t, err, errModeChanged, "a save in another mode must be refused")
	// Even written behind the script's back, a cursor of another mode is
	// not resumed.
	require.NoError(t, rdb.HSet(ctx, checkpointKey("task-1"), "standalone",
		checkpoint{runID: runID, mode: "shadow", cursor: cur}.String()).Err())

	scan.finish()
	left := CountExisting(t, rdb, family...)
	require.Zero(t, left, "a shadow run's cursor was resumed by an enforce run: %d keys skipped", left)
}
