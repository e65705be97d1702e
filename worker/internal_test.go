package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

func familyPolicy(t *testing.T) *keyspec.Policy {
	t.Helper()
	p, err := keyspec.Parse("p.yaml", []byte(`
version: 1
classes:
  standard: {ttl: 1m}
families:
  item:
    template: "item:{shop}:{id}"
    class: standard
`))
	require.NoError(t, err)
	return p
}

func fill(t *testing.T, rdb redis.UniversalClient, n int, format string) []string {
	t.Helper()
	ctx := context.Background()
	keys := make([]string, n)
	pipe := rdb.Pipeline()
	for i := range keys {
		keys[i] = fmt.Sprintf(format, i)
		pipe.Set(ctx, keys[i], "v", 0)
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)
	return keys
}

// A family delete that reaches its soft deadline saves its cursor and
// enqueues a continuation that shares the checkpoint; the continuation
// resumes instead of restarting.
func TestDeleteFamilyPausesAndContinues(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	family := fill(t, rdb, 5000, "item:s1:%d")
	others := fill(t, rdb, 500, "item:s2:%d")
	w, err := New(Config{Queue: rdb, Policy: familyPolicy(t), ScanCount: 100, Logger: quiet()})
	require.NoError(t, err)
	task := tasks.DeleteFamily{Family: "item", Params: map[string]string{"shop": "s1"}}
	payload, err := tasks.Marshal(task)
	require.NoError(t, err)

	// First run: the clock says the deadline is near after one batch.
	w.now = func() time.Time { return time.Now().Add(time.Hour) }
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	err = w.applyDeleteFamily(runCtx, w.state.Load(), task, asynq.NewTask(tasks.KindDeleteFamily, payload), "task-1", w.log)
	cancel()
	require.NoError(t, err, "a pause hands over to a continuation; it is no failure")
	cp, err := w.loadCheckpoint(ctx, checkpointKey("task-1"), "standalone")
	require.NoError(t, err)
	require.NotZero(t, cp.cursor)
	require.False(t, cp.done)
	left := CountExisting(t, rdb, family...)
	require.Less(t, left, len(family), "the first slice deleted nothing")
	require.Positive(t, left, "the first slice was meant to stop early")

	// The continuation is queued on the class's queue and names the checkpoint.
	insp := asynq.NewInspectorFromRedisClient(rdb)
	pending, err := insp.ListPendingTasks("invalidator-standard")
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, payload, pending[0].Payload)
	require.Equal(t, "task-1", pending[0].Headers[tasks.HeaderScan])

	// Running it resumes from the cursor and finishes.
	w.now = time.Now
	cont := asynq.NewTaskWithHeaders(tasks.KindDeleteFamily, payload, pending[0].Headers)
	require.NoError(t, w.applyDeleteFamily(ctx, w.state.Load(), task, cont, pending[0].ID, w.log))
	require.Zero(t, CountExisting(t, rdb, family...))
	require.Equal(t, len(others), CountExisting(t, rdb, others...))
	requireFinished(t, rdb, "task-1")
}

// A node marked done by the same Redis process is skipped on resume.
func TestDeleteFamilySkipsFinishedNodes(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	keys := fill(t, rdb, 10, "item:s1:%d")
	w, err := New(Config{Queue: rdb, Policy: familyPolicy(t), Logger: quiet()})
	require.NoError(t, err)
	runID, err := serverRunID(ctx, rdb)
	require.NoError(t, err)
	require.NoError(t, w.saveCheckpoint(ctx, checkpointKey("t2"), "standalone", checkpoint{runID: runID, mode: "enforce", done: true}, 0, 0))
	task := tasks.DeleteFamily{Family: "item", Params: map[string]string{"shop": "s1"}}
	require.NoError(t, w.applyDeleteFamily(ctx, w.state.Load(), task, asynq.NewTask(tasks.KindDeleteFamily, nil), "t2", w.log))
	require.Equal(t, len(keys), CountExisting(t, rdb, keys...))
}

// A cursor saved by another Redis process (before a restart or failover)
// means nothing to this one: the scan starts again from zero.
func TestDeleteFamilyIgnoresCursorOfAnotherServer(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	keys := fill(t, rdb, 2000, "item:s1:%d")
	w, err := New(Config{Queue: rdb, Policy: familyPolicy(t), Logger: quiet()})
	require.NoError(t, err)
	for _, cp := range []checkpoint{{runID: "another-process", mode: "enforce", cursor: 1 << 40}, {runID: "another-process", mode: "enforce", done: true}} {
		fill(t, rdb, 2000, "item:s1:%d")
		require.NoError(t, w.saveCheckpoint(ctx, checkpointKey("t3"), "standalone", cp, 0, 0))
		task := tasks.DeleteFamily{Family: "item", Params: map[string]string{"shop": "s1"}}
		require.NoError(t, w.applyDeleteFamily(ctx, w.state.Load(), task, asynq.NewTask(tasks.KindDeleteFamily, nil), "t3", w.log))
		require.Zero(t, CountExisting(t, rdb, keys...), "checkpoint %v was trusted", cp)
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	t.Parallel()
	for _, cp := range []checkpoint{{runID: "abc", mode: "enforce", cursor: 0}, {runID: "abc", mode: "shadow", cursor: 1<<64 - 1}, {runID: "abc", mode: "enforce", done: true}} {
		got, ok := parseCheckpoint(cp.String())
		require.True(t, ok)
		require.Equal(t, cp, got)
	}
	for _, bad := range []string{"", "12", " 12", "abc x", "abc 12", "abc done", "abc enforce x", "abc enforce -1", "abc enforce 99999999999999999999999", "abc  12"} {
		_, ok := parseCheckpoint(bad)
		require.False(t, ok, "%q", bad)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestBackoffIsCappedExponentialWithJitter(t *testing.T) {
	t.Parallel()
	c := &keyspec.Class{BackoffBase: 100 * time.Millisecond, BackoffMax: 2 * time.Second}
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 20 {
		want := min(c.BackoffBase<<min(n, 30), c.BackoffMax)
		for range 50 {
			d := backoff(c, n, r)
			require.GreaterOrEqual(t, d, want/2, "retry %d", n)
			require.LessOrEqual(t, d, want, "retry %d", n)
		}
	}
	// Zero jitter draw gives exactly half, a full draw the whole delay.
	require.Equal(t, 50*time.Millisecond, backoff(c, 0, fixedRand(0)))
	require.Equal(t, 2*time.Second, backoff(c, 10, fixedRand(1)))
}

type fixedRand float64

func (f fixedRand) Float64() float64 { return float64(f) }

// loadCheckpoint reads one node's cursor of a scan, for assertions.
func (w *Worker) loadCheckpoint(ctx context.Context, ck, nodeID string) (checkpoint, error) {
	v, err := w.cfg.Queue.HGet(ctx, ck, nodeID).Result()
	if errors.Is(err, redis.Nil) {
		return checkpoint{}, nil
	}
	if err != nil {
		return checkpoint{}, err
	}
	cp, _ := parseCheckpoint(v)
	return cp, nil
}

// requireFinished checks that a scan's checkpoint says it finished, with
// every node done, and that it will expire.
func requireFinished(t *testing.T, queue redis.UniversalClient, scanID string) {
	t.Helper()
	p, err := FamilyDeleteProgress(context.Background(), queue, scanID)
	require.NoError(t, err)
	require.True(t, p.Finished, "%+v", p)
	require.Equal(t, p.Nodes, p.NodesDone, "%+v", p)
	require.Positive(t, queue.PTTL(context.Background(), checkpointKey(scanID)).Val())
}
