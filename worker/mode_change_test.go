package worker

import (
	"context"
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

// a family delete that paused in shadow mode leaves a cursor (and a
// _deleted count of keys it only counted) in its checkpoint. After the
// operator reloads the policy with the family in enforce mode, the
// continuation resumes from that cursor: every key the shadow slice merely
// counted is skipped for good, yet the task logs "family deleted" and
// reports the shadow count as deleted keys.
func TestShadowCursorNotReusedAfterEnforce(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	family := fill(t, rdb, 5000, "item:s1:%d")
	w, err := New(Config{Queue: rdb, Policy: modePolicy(t, "shadow"), ScanCount: 100, Logger: quiet()})
	require.NoError(t, err)
	task := tasks.DeleteFamily{Family: "item", Params: map[string]string{"shop": "s1"}}
	payload, err := tasks.Marshal(task)
	require.NoError(t, err)

	// A shadow slice pauses at its soft deadline after one page.
	w.now = func() time.Time { return time.Now().Add(time.Hour) }
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	require.NoError(t, w.applyDeleteFamily(runCtx, w.state.Load(), task, asynq.NewTask(tasks.KindDeleteFamily, payload), "task-1", w.log))
	cancel()
	require.Equal(t, len(family), CountExisting(t, rdb, family...), "shadow deleted keys")

	// The operator switches the family to enforce; the continuation runs.
	require.NoError(t, w.SetPolicy(modePolicy(t, "enforce")))
	w.now = time.Now
	cont := asynq.NewTaskWithHeaders(tasks.KindDeleteFamily, payload, map[string]string{scanHeader: "task-1"})
	require.NoError(t, w.applyDeleteFamily(ctx, w.state.Load(), task, cont, "task-2", w.log))
	p, err := FamilyDeleteProgress(ctx, rdb, "task-1")
	require.NoError(t, err)
	left := CountExisting(t, rdb, family...)
	require.Zero(t, left, "enforce-mode family delete reported success (progress %+v) but %d keys of the family are still cached", p, left)
}
