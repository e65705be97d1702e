package worker

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// A task whose work goes on in a task it enqueues (an event's pattern
// delete, a second delete, the continuation of a paused scan) is done only
// once that task is queued. If the queue Redis refuses it, the task fails
// and retries; acknowledging it would drop that work for good.
func TestDerivedTaskNotQueuedFailsTheTask(t *testing.T) {
	t.Parallel()
	policy, err := keyspec.Parse("p.yaml", []byte(`
version: 1
default_class: standard
classes:
  standard: {ttl: 1m, second_delete: 1s}
families:
  item: {template: "item:{id}", class: standard}
  page: {template: "page:{id}:{n}", class: standard}
events:
  item.changed:
    attributes: [id]
    invalidates: [item, {family: page, wildcard: [n]}]
`))
	require.NoError(t, err)
	keys := func(keys ...string) *asynq.Task {
		payload, err := tasks.Marshal(tasks.DeleteKeys{Keys: keys})
		require.NoError(t, err)
		return asynq.NewTask(tasks.KindDeleteKeys, payload)
	}
	event := func(id string) *asynq.Task {
		payload, err := tasks.Marshal(tasks.Event{Name: "item.changed", Attrs: map[string]string{"id": id}})
		require.NoError(t, err)
		return asynq.NewTask(tasks.KindEvent, payload)
	}
	for name, c := range map[string]struct {
		task    *asynq.Task
		derived string // the kind of the task that cannot be queued
	}{
		"second delete of a key delete": {keys("item:1"), tasks.KindDeleteKeys},
		"second delete of an event":     {event("2"), tasks.KindDeleteKeys},
		"pattern delete of an event":    {event("3"), tasks.KindDeleteFamily},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rdb := redistest.NewDB(t).Client
			faults := &Faults{}
			rdb.AddHook(faults)
			w, err := New(Config{Queue: rdb, Policy: policy, Logger: quiet()})
			require.NoError(t, err)
			faults.Fail(Carrying(c.derived))
			err = w.ProcessTask(context.Background(), c.task)
			require.ErrorContains(t, err, ErrFault.Error(), "the task was acknowledged though its %s was never queued", c.derived)
			require.False(t, IsPoison(err))

			faults.Heal()
			require.NoError(t, w.ProcessTask(context.Background(), c.task))
			requireQueued(t, rdb, "invalidator-standard", c.derived)
		})
	}
	t.Run("continuation of a paused scan", func(t *testing.T) {
		t.Parallel()
		rdb := redistest.NewDB(t).Client
		family := fill(t, rdb, 3000, "item:s1:%d")
		faults := &Faults{}
		rdb.AddHook(faults)
		w, err := New(Config{Queue: rdb, Policy: familyPolicy(t), ScanCount: 100, Logger: quiet()})
		require.NoError(t, err)
		scan := newSlicedScan(t, w, "s1")
		run := func() error {
			w.now = func() time.Time { return time.Now().Add(time.Hour) } // past the soft deadline
			defer func() { w.now = time.Now }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			return w.applyDeleteFamily(ctx, w.state.Load(), scan.task, asynq.NewTask(tasks.KindDeleteFamily, scan.payload), "task-1", w.log)
		}
		faults.Fail(Carrying(tasks.KindDeleteFamily))
		err = run()
		require.ErrorContains(t, err, ErrFault.Error(), "a paused scan was acknowledged though its continuation was never queued")
		require.False(t, IsPoison(err))
		require.Positive(t, CountExisting(t, rdb, family...))

		faults.Heal()
		require.NoError(t, run(), "the retry pauses again and queues its continuation")
		requireQueued(t, rdb, "invalidator-standard", tasks.KindDeleteFamily)
		scan.finish()
		require.Zero(t, CountExisting(t, rdb, family...))
	})
}

// requireQueued checks that queue holds a pending or scheduled task of kind.
func requireQueued(t *testing.T, rdb redis.UniversalClient, queue, kind string) {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	pending, err := insp.ListPendingTasks(queue)
	require.NoError(t, err)
	scheduled, err := insp.ListScheduledTasks(queue)
	require.NoError(t, err)
	for _, ti := range append(pending, scheduled...) {
		if ti.Type == kind {
			return
		}
	}
	t.Fatalf("no %s task queued on %s", kind, queue)
}
