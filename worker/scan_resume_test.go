package worker

import (
	"context"
	"slices"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/tasks"
)

// A family delete resumed from its checkpoint continues at the saved
// cursor: its first SCAN starts there and it never scans from zero again.
// Restarting at zero would also end with every key gone, so only the
// cursors show it. Both ways a scan resumes are covered: a continuation
// after a pause, and a retry after a failure.
func TestDeleteFamilyResumesAtTheSavedCursor(t *testing.T) {
	t.Parallel()
	t.Run("continuation", func(t *testing.T) {
		t.Parallel()
		rdb := redistest.NewDB(t).Client
		family := fill(t, rdb, 3000, "item:s1:%d")
		fill(t, rdb, 3000, "item:s2:%d")
		w, err := New(Config{Queue: rdb, Policy: familyPolicy(t), ScanCount: 100, Logger: quiet()})
		require.NoError(t, err)
		scan := newSlicedScan(t, w, "s1")
		scan.pause()
		saved, err := w.loadCheckpoint(context.Background(), checkpointKey("task-1"), "standalone")
		require.NoError(t, err)
		require.NotZero(t, saved.cursor, "the first slice was meant to save a cursor")

		watch := newScanWatch(checkpointKey("task-1"))
		rdb.AddHook(watch)
		scan.finish()
		requireResumedAt(t, watch, saved.cursor)
		require.Zero(t, CountExisting(t, rdb, family...))
	})
	t.Run("retry", func(t *testing.T) {
		t.Parallel()
		rdb := redistest.NewDB(t).Client
		family := fill(t, rdb, 3000, "item:s1:%d")
		fill(t, rdb, 3000, "item:s2:%d")
		w, err := New(Config{Queue: rdb, Policy: familyPolicy(t), ScanCount: 100, Logger: quiet()})
		require.NoError(t, err)
		w.cfg.checkpointInterval = 0 // save after every page
		first := newScanWatch(checkpointKey("t"))
		first.failAt = 10
		rdb.AddHook(first)
		task := asynq.NewTask(tasks.KindDeleteFamily, nil)
		require.ErrorIs(t, w.applyDeleteFamily(context.Background(), w.state.Load(), familyTask("s1"), task, "t", w.log), errUnlinkFailed)
		saved, err := w.loadCheckpoint(context.Background(), checkpointKey("t"), "standalone")
		require.NoError(t, err)
		require.NotZero(t, saved.cursor, "the pages before the failure were meant to be saved")

		watch := newScanWatch(checkpointKey("t"))
		rdb.AddHook(watch)
		require.NoError(t, w.applyDeleteFamily(context.Background(), w.state.Load(), familyTask("s1"), task, "t", w.log))
		requireResumedAt(t, watch, saved.cursor)
		require.Zero(t, CountExisting(t, rdb, family...))
		requireFinished(t, rdb, "t")
	})
}

// requireResumedAt checks that the scan watch saw a scan start at cursor
// and never SCAN from zero.
func requireResumedAt(t *testing.T, watch *scanWatch, cursor uint64) {
	t.Helper()
	watch.mu.Lock()
	defer watch.mu.Unlock()
	require.NotEmpty(t, watch.starts, "the resumed run issued no SCAN")
	require.Equal(t, cursor, watch.starts[0], "the resumed scan started at cursor %d, not at the saved %d", watch.starts[0], cursor)
	require.False(t, slices.Contains(watch.starts, 0), "the resumed scan went back to cursor 0: %v", watch.starts)
	require.Empty(t, watch.violations)
}
