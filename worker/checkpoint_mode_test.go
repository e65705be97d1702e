package worker

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/tasks"
)

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
	task := tasks.DeleteFamily{Family: "item", Params: map[string]string{"shop": "s1"}}
	payload, err := tasks.Marshal(task)
	require.NoError(t, err)

	w.now = func() time.Time { return time.Now().Add(time.Hour) }
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	require.NoError(t, w.applyDeleteFamily(runCtx, w.state.Load(), task, asynq.NewTask(tasks.KindDeleteFamily, payload), "task-1", w.log))
	cancel()
	// What an older worker wrote: no _mode or _task, node entries "runid cursor".
	ck := checkpointKey("task-1")
	cp, err := w.loadCheckpoint(ctx, ck, "standalone")
	require.NoError(t, err)
	require.NotZero(t, cp.cursor, "the shadow slice saved a cursor")
	require.NoError(t, rdb.HDel(ctx, ck, fieldMode, fieldTask).Err())
	require.NoError(t, rdb.HSet(ctx, ck, "standalone", cp.runID+" "+strconv.FormatUint(cp.cursor, 10)).Err())

	require.NoError(t, w.SetPolicy(modePolicy(t, "enforce")))
	w.now = time.Now
	cont := asynq.NewTaskWithHeaders(tasks.KindDeleteFamily, payload, map[string]string{scanHeader: "task-1"})
	require.NoError(t, w.applyDeleteFamily(ctx, w.state.Load(), task, cont, "task-2", w.log))
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
	task := tasks.DeleteFamily{Family: "item", Params: map[string]string{"shop": "s2"}}
	payload, err := tasks.Marshal(task)
	require.NoError(t, err)
	runID, err := serverRunID(ctx, rdb)
	require.NoError(t, err)

	// Enforce slice 1 (mode reset happens here) pauses after one page.
	w.now = func() time.Time { return time.Now().Add(time.Hour) }
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	require.NoError(t, w.applyDeleteFamily(runCtx, w.state.Load(), task, asynq.NewTask(tasks.KindDeleteFamily, payload), "task-1", w.log))
	cancel()
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

	w.now = time.Now
	cont := asynq.NewTaskWithHeaders(tasks.KindDeleteFamily, payload, map[string]string{scanHeader: "task-1"})
	require.NoError(t, w.applyDeleteFamily(ctx, w.state.Load(), task, cont, "task-2", w.log))
	left := CountExisting(t, rdb, family...)
	require.Zero(t, left, "a shadow run's cursor was resumed by an enforce run: %d keys skipped", left)
}
