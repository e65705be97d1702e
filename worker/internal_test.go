package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

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

// A family delete that reaches its soft deadline saves its cursor, reports
// progress (not a failure), and the next run resumes instead of restarting.
func TestDeleteFamilyPausesAndResumes(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	family := fill(t, rdb, 5000, "item:s1:%d")
	others := fill(t, rdb, 500, "item:s2:%d")
	w, err := New(Config{Queue: rdb, Policy: familyPolicy(t), ScanCount: 100, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	task := tasks.DeleteFamily{Family: "item", Params: map[string]string{"shop": "s1"}}
	log := w.log

	// First run: the clock says the deadline is near after one batch.
	w.now = func() time.Time { return time.Now().Add(time.Hour) }
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	err = w.applyDeleteFamily(runCtx, task, "task-1", log)
	cancel()
	var progress *progressError
	require.ErrorAs(t, err, &progress)
	require.False(t, isFailure(err), "a pause must not count as a failed attempt")
	cursor := rdb.HGet(ctx, checkpointKey("task-1"), "standalone").Val()
	require.NotEmpty(t, cursor)
	require.NotEqual(t, "0", cursor)
	require.NotEqual(t, cursorDone, cursor)
	left := rdb.Exists(ctx, family...).Val()
	require.Less(t, left, int64(len(family)), "the first slice deleted nothing")
	require.Greater(t, left, int64(0), "the first slice was meant to stop early")

	// Second run resumes from the cursor and finishes.
	w.now = time.Now
	require.NoError(t, w.applyDeleteFamily(ctx, task, "task-1", log))
	require.Zero(t, rdb.Exists(ctx, family...).Val())
	require.Equal(t, int64(len(others)), rdb.Exists(ctx, others...).Val())
	require.Zero(t, rdb.Exists(ctx, checkpointKey("task-1")).Val())
}

// A resumed run starts at the saved cursor: a node marked done is skipped,
// so its keys (re-created after the first pass) are not scanned again.
func TestDeleteFamilySkipsFinishedNodes(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	keys := fill(t, rdb, 10, "item:s1:%d")
	w, err := New(Config{Queue: rdb, Policy: familyPolicy(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	require.NoError(t, w.saveCursor(ctx, checkpointKey("t2"), "standalone", cursorDone))
	require.NoError(t, w.applyDeleteFamily(ctx, tasks.DeleteFamily{Family: "item", Params: map[string]string{"shop": "s1"}}, "t2", w.log))
	require.Equal(t, int64(len(keys)), rdb.Exists(ctx, keys...).Val())
}

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

func TestVersionKeyTTL(t *testing.T) {
	t.Parallel()
	require.Zero(t, versionKeyTTL(&keyspec.Family{}))
	require.Equal(t, 2*time.Duration(float64(time.Minute)*1.5), versionKeyTTL(&keyspec.Family{TTL: time.Minute, Jitter: 0.5}))
}
