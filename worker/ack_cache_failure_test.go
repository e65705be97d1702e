package worker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
	"github.com/invalidator/invalidator/worker"
)

// ackPolicy has a retry budget far longer than any test here fails for, so
// a task that fails is seen retrying, never archived.
const ackPolicy = `
version: 1
default_class: standard
classes:
  standard: {ttl: 1m, max_retry: 25, timeout: 10s, backoff_base: 10ms, backoff_max: 20ms}
families:
  item: {template: "item:{id}", class: standard}
  page: {template: "page:{id}:{n}", class: standard}
  feed: {template: "feed:{user}", class: standard, strategy: version}
events:
  item.changed:
    attributes: [id]
    invalidates:
      - item
      - {family: feed, params: {user: id}}
  feed.changed:
    attributes: [id]
    invalidates:
      - {family: feed, params: {user: id}}
`

// failingCache is a worker whose cache Redis (a database of its own,
// apart from the queue's) fails the commands the test picks.
type failingCache struct {
	queue, cache *redis.Client
	faults       *worker.Faults
	policy       *keyspec.Policy
	client       *enqueue.Client
	insp         *asynq.Inspector
}

func startFailingCache(t *testing.T) *failingCache {
	t.Helper()
	policy, err := keyspec.Parse("ack.yaml", []byte(ackPolicy))
	require.NoError(t, err)
	f := &failingCache{queue: redistest.NewDB(t).Client, cache: redistest.NewDB(t).Client, faults: &worker.Faults{}, policy: policy}
	f.cache.AddHook(f.faults)
	f.client, err = enqueue.New(f.queue, enqueue.Config{Policy: policy})
	require.NoError(t, err)
	f.insp = asynq.NewInspectorFromRedisClient(f.queue)
	b := &testBundle{rdb: f.queue, policy: policy}
	b.startWorker(t, func(c *worker.Config) { c.Cache = f.cache; c.PollInterval = 2 * time.Millisecond })
	return f
}

// requireRetrying waits until the task has failed at least once and is
// waiting for its next attempt, and fails the test at once if it was
// acknowledged (asynq deletes a completed task) or archived instead.
func requireRetrying(t *testing.T, insp *asynq.Inspector, queue, id string) *asynq.TaskInfo {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ti, err := insp.GetTaskInfo(queue, id)
		if errors.Is(err, asynq.ErrTaskNotFound) {
			t.Fatalf("task %s was acknowledged although the cache failed it: its invalidation is lost", id)
		}
		require.NoError(t, err)
		require.NotEqual(t, asynq.TaskStateArchived, ti.State, "task %s went to the dead letter instead of retrying: %s", id, ti.LastErr)
		if ti.Retried > 0 {
			return ti
		}
		require.True(t, time.Now().Before(deadline), "task %s never failed; state %s", id, ti.State)
		time.Sleep(5 * time.Millisecond)
	}
}

// requireDone waits until the task is acknowledged (gone from its queue)
// and checks that the queue's dead letter is empty.
func requireDone(t *testing.T, insp *asynq.Inspector, queue, id string) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, err := insp.GetTaskInfo(queue, id)
		return errors.Is(err, asynq.ErrTaskNotFound)
	}, 15*time.Second, 5*time.Millisecond, "task %s never completed", id)
	info, err := insp.GetQueueInfo(queue)
	require.NoError(t, err)
	require.Zero(t, info.Archived, "dead letter of %s", queue)
}

// A cache that fails the commands of a task fails the task: it is retried,
// not acknowledged and not dead-lettered, its keys stay until the cache
// works again, and then they go. Each case fails only the commands its
// task depends on, so an error ignored at that step shows as a task
// acknowledged with its invalidation undone.
func TestCacheFailureRetriesTheTask(t *testing.T) {
	t.Parallel()
	const queue = "invalidator-standard"
	type check struct {
		before func(t *testing.T, f *failingCache)        // fill the cache
		submit func(t *testing.T, f *failingCache) string // enqueue; returns the task ID
		undone func(t *testing.T, f *failingCache) bool   // is the invalidation still undone?
		done   func(t *testing.T, f *failingCache)        // wait until it is done
		fail   func(redis.Cmder) bool                     // commands that fail
	}
	keysUndone := func(keys ...string) func(*testing.T, *failingCache) bool {
		return func(t *testing.T, f *failingCache) bool { return count(t, f.cache, keys...) > 0 }
	}
	keysGone := func(keys ...string) func(*testing.T, *failingCache) {
		return func(t *testing.T, f *failingCache) { requireGone(t, f.cache, keys...) }
	}
	setKeys := func(keys ...string) func(*testing.T, *failingCache) {
		return func(t *testing.T, f *failingCache) { set(t, f.cache, keys...) }
	}
	versionUnset := func(t *testing.T, f *failingCache) bool {
		fam, err := f.policy.Family("feed")
		require.NoError(t, err)
		vkey, err := fam.VersionKey(map[string]string{"user": "7"})
		require.NoError(t, err)
		return f.cache.Exists(t.Context(), vkey).Val() == 0
	}
	versionSet := func(t *testing.T, f *failingCache) {
		require.Eventually(t, func() bool { return !versionUnset(t, f) }, 15*time.Second, 5*time.Millisecond, "version never bumped")
	}
	var pages []string
	for i := range 300 {
		pages = append(pages, fmt.Sprintf("page:5:%d", i))
	}
	for name, c := range map[string]check{
		// worker/delete_keys.go: the batcher's UNLINK error.
		"keys, UNLINK fails": {
			before: setKeys("item:1", "item:2"),
			submit: func(t *testing.T, f *failingCache) string {
				ids, err := f.client.DeleteKeys(t.Context(), "item:1", "item:2")
				require.NoError(t, err)
				return ids[0]
			},
			fail: worker.Named("unlink"), undone: keysUndone("item:1", "item:2"), done: keysGone("item:1", "item:2"),
		},
		// worker/event.go: an event's key deletes fail while its bump
		// would succeed.
		"event, UNLINK fails": {
			before: setKeys("item:7"),
			submit: func(t *testing.T, f *failingCache) string {
				id, err := f.client.Publish(t.Context(), "item.changed", map[string]string{"id": "7"})
				require.NoError(t, err)
				return id
			},
			fail: worker.Named("unlink"), undone: keysUndone("item:7"), done: keysGone("item:7"),
		},
		// worker/event.go: an event's version bump.
		"event, bump fails": {
			submit: func(t *testing.T, f *failingCache) string {
				id, err := f.client.Publish(t.Context(), "feed.changed", map[string]string{"id": "7"})
				require.NoError(t, err)
				return id
			},
			fail: worker.Named("evalsha", "eval"), undone: versionUnset, done: versionSet,
		},
		// worker/bump_version.go.
		"bump, script fails": {
			submit: func(t *testing.T, f *failingCache) string {
				id, err := f.client.BumpVersion(t.Context(), "feed", map[string]string{"user": "7"})
				require.NoError(t, err)
				return id
			},
			fail: worker.Named("evalsha", "eval"), undone: versionUnset, done: versionSet,
		},
		// worker/delete_family.go: a page's UNLINK.
		"family, UNLINK fails": {
			before: setKeys(pages...),
			submit: func(t *testing.T, f *failingCache) string {
				id, err := f.client.DeleteFamily(t.Context(), "page", map[string]string{"id": "5"})
				require.NoError(t, err)
				return id
			},
			fail: worker.Named("unlink"), undone: keysUndone(pages...), done: keysGone(pages...),
		},
		// worker/delete_family.go: the SCAN itself.
		"family, SCAN fails": {
			before: setKeys(pages...),
			submit: func(t *testing.T, f *failingCache) string {
				id, err := f.client.DeleteFamily(t.Context(), "page", map[string]string{"id": "5"})
				require.NoError(t, err)
				return id
			},
			fail: worker.Named("scan"), undone: keysUndone(pages...), done: keysGone(pages...),
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := startFailingCache(t)
			if c.before != nil {
				c.before(t, f)
			}
			f.faults.Fail(c.fail)
			id := c.submit(t, f)
			ti := requireRetrying(t, f.insp, queue, id)
			require.Contains(t, ti.LastErr, worker.ErrFault.Error())
			require.NotContains(t, ti.LastErr, "poison")
			require.True(t, c.undone(t, f), "the invalidation happened although its commands failed")
			require.Positive(t, f.faults.Hits())

			f.faults.Heal()
			c.done(t, f)
			requireDone(t, f.insp, queue, id)
		})
	}
}

// The same through ProcessTask alone, as a caller that mounts the worker on
// its own asynq server sees it: an error that is neither nil nor poison.
func TestProcessTaskFailsWhileTheCacheFails(t *testing.T) {
	t.Parallel()
	policy, err := keyspec.Parse("ack.yaml", []byte(ackPolicy))
	require.NoError(t, err)
	queue, cache := redistest.Client(t), redistest.NewDB(t).Client
	faults := &worker.Faults{}
	cache.AddHook(faults)
	w, err := worker.New(worker.Config{Queue: queue, Cache: cache, Policy: policy, Logger: testLogger(t)})
	require.NoError(t, err)
	set(t, cache, "item:1", "item:9")
	for _, task := range []*asynq.Task{
		keysTask(t, "item:1"),
		eventTask(t, "item.changed", map[string]string{"id": "9"}),
	} {
		faults.Fail(worker.Named("unlink"))
		err := w.ProcessTask(context.Background(), task)
		require.ErrorIs(t, err, worker.ErrFault, task.Type())
		require.False(t, worker.IsPoison(err), "a failing cache is no poison: %v", err)
		faults.Heal()
		require.NoError(t, w.ProcessTask(context.Background(), task), task.Type())
	}
	require.Zero(t, count(t, cache, "item:1", "item:9"))
}

// keysTask is an asynq task deleting keys.
func keysTask(t *testing.T, keys ...string) *asynq.Task {
	t.Helper()
	payload, err := tasks.Marshal(tasks.DeleteKeys{Keys: keys})
	require.NoError(t, err)
	return asynq.NewTask(tasks.KindDeleteKeys, payload)
}

// eventTask is an asynq task publishing an event.
func eventTask(t *testing.T, name string, attrs map[string]string) *asynq.Task {
	t.Helper()
	payload, err := tasks.Marshal(tasks.Event{Name: name, Attrs: attrs})
	require.NoError(t, err)
	return asynq.NewTask(tasks.KindEvent, payload)
}
