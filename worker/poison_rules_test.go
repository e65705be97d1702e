package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
	"github.com/invalidator/invalidator/worker"
)

// rulesBundle is a running worker with metrics, and a raw asynq client to
// enqueue what no enqueue.Client would.
type rulesBundle struct {
	db   *redistest.DB
	aq   *asynq.Client
	insp *asynq.Inspector
	reg  *prometheus.Registry
}

func startRulesWorker(t *testing.T, policy string) *rulesBundle {
	t.Helper()
	p, err := keyspec.Parse("rules.yaml", []byte(policy))
	require.NoError(t, err)
	db := redistest.NewDB(t)
	reg := prometheus.NewRegistry()
	m, err := worker.NewMetrics(reg)
	require.NoError(t, err)
	b := &testBundle{rdb: db.Client, policy: p}
	b.startWorker(t, func(c *worker.Config) { c.Metrics = m; c.PollInterval = 2 * time.Millisecond })
	aq := asynq.NewClientFromRedisClient(db.Client)
	t.Cleanup(func() { _ = aq.Close() })
	return &rulesBundle{db: db, aq: aq, insp: asynq.NewInspectorFromRedisClient(db.Client), reg: reg}
}

func (b *rulesBundle) enqueue(t *testing.T, task *asynq.Task, opts ...asynq.Option) *asynq.TaskInfo {
	t.Helper()
	info, err := b.aq.EnqueueContext(context.Background(), task, opts...)
	require.NoError(t, err)
	return info
}

// task is an asynq task of kind with t's encoding as payload.
func task(t *testing.T, tk tasks.Task) *asynq.Task {
	t.Helper()
	payload, err := tasks.Marshal(tk)
	require.NoError(t, err)
	return asynq.NewTask(tk.Kind(), payload)
}

// waitArchived waits until the task is in the dead letter. If a task is
// seen retried, retried says whether that is allowed: a poison task that
// retries fails the test at once.
func waitArchived(t *testing.T, insp *asynq.Inspector, queue, id string, retries bool) *asynq.TaskInfo {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ti, err := insp.GetTaskInfo(queue, id)
		require.NoError(t, err, "task %s (acknowledged?)", id)
		if !retries {
			require.Zero(t, ti.Retried, "task %s was retried (%s); a poison task goes to the dead letter at once", id, ti.LastErr)
		}
		if ti.State == asynq.TaskStateArchived {
			return ti
		}
		require.True(t, time.Now().Before(deadline), "task %s not archived; state %s, last error %q", id, ti.State, ti.LastErr)
		time.Sleep(5 * time.Millisecond)
	}
}

const rulesPolicy = `
version: 1
default_class: standard
classes:
  standard: {ttl: 1m, max_retry: 2, backoff_base: 10ms, backoff_max: 20ms}
  slow: {ttl: 1m, max_retry: 5, backoff_base: 1h, backoff_max: 2h}
families:
  item: {template: "item:{id}", class: standard}
  feed: {template: "feed:{user}", class: standard, strategy: version}
  lazy: {template: "lazy:{id}", class: slow}
events:
  item.changed:
    attributes: [id]
    invalidates: [item]
  lazy.changed:
    attributes: [id]
    invalidates: [lazy]
`

// Every kind of poison goes to the dead letter at once: archived with zero
// retries, a reason that starts with "poison task:" and says what is
// wrong, and counted as poison. The worker goes on serving.
func TestPoisonIsArchivedAtOnceWithItsReason(t *testing.T) {
	t.Parallel()
	b := startRulesWorker(t, rulesPolicy)
	const queue = "invalidator-standard"
	// MaxRetry 5 with 10ms backoffs: a task wrongly retried shows it
	// within a second or two.
	for _, c := range []struct {
		name   string
		task   *asynq.Task
		reason string
	}{
		{"unknown kind", asynq.NewTask("email:send", []byte("{}")), `unknown task kind "email:send"`},
		{"undecodable payload", asynq.NewTask(tasks.KindDeleteKeys, []byte("not a payload")), "decode invalidate:keys payload"},
		{"unknown family, delete", task(t, tasks.DeleteFamily{Family: "brand_new", Params: map[string]string{"id": "1"}}), "brand_new"},
		{"unknown family, bump", task(t, tasks.BumpVersion{Family: "brand_new", Params: map[string]string{"id": "1"}}), "brand_new"},
		{"bump of a delete family", task(t, tasks.BumpVersion{Family: "item", Params: map[string]string{"id": "1"}}), "item"},
		{"bump without its parameter", task(t, tasks.BumpVersion{Family: "feed", Params: map[string]string{"id": "1"}}), "user"},
		{"family delete with an unknown parameter", task(t, tasks.DeleteFamily{Family: "item", Params: map[string]string{"sku": "1"}}), "sku"},
		{"unknown event", task(t, tasks.Event{Name: "item.exploded", Attrs: map[string]string{"id": "1"}}), `unknown event "item.exploded"`},
		{"event without its attribute", task(t, tasks.Event{Name: "item.changed", Attrs: map[string]string{"sku": "1"}}), "id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			info := b.enqueue(t, c.task, asynq.Queue(queue), asynq.MaxRetry(5))
			ti := waitArchived(t, b.insp, queue, info.ID, false)
			require.True(t, strings.HasPrefix(ti.LastErr, "poison task: "), "reason %q", ti.LastErr)
			require.Contains(t, ti.LastErr, c.reason)
		})
	}
	require.Equal(t, 1.0, gatherValue(t, b.reg, "invalidator_dead_letters_total", map[string]string{"reason": "unknown_kind"}))
	require.Equal(t, 8.0, gatherValue(t, b.reg, "invalidator_dead_letters_total", map[string]string{"reason": "poison"}))
	require.Zero(t, gatherValue(t, b.reg, "invalidator_retries_total", nil), "a poison task was retried")

	set(t, b.db.Client, "item:after")
	b.enqueue(t, keysTask(t, "item:after"), asynq.Queue(queue))
	requireGone(t, b.db.Client, "item:after")
}

// What is not poison retries: a payload of a newer format (a worker of the
// next release may be in the fleet during a rolling upgrade) and a cache
// target this worker lacks (another worker may have it). They go to the
// dead letter only once their retries are spent, counted as such.
func TestNotPoisonRetriesUntilItsBudgetIsSpent(t *testing.T) {
	t.Parallel()
	b := startRulesWorker(t, rulesPolicy)
	const queue = "invalidator-standard"
	newer, err := tasks.Marshal(tasks.DeleteKeys{Keys: []string{"item:1"}})
	require.NoError(t, err)
	newer[1] = tasks.FormatVersion + 1 // the format version byte
	elsewhere := task(t, tasks.Event{Name: "item.changed", Attrs: map[string]string{"id": "1"}, Target: "elsewhere"})
	for _, c := range []struct {
		name   string
		task   *asynq.Task
		reason string
	}{
		{"newer format", asynq.NewTask(tasks.KindDeleteKeys, newer), "newer format"},
		{"event for an unknown target", elsewhere, `unknown cache target "elsewhere"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			info := b.enqueue(t, c.task, asynq.Queue(queue), asynq.MaxRetry(2))
			ti := waitArchived(t, b.insp, queue, info.ID, true)
			require.Equal(t, 2, ti.Retried, "the task must spend its retries before the dead letter")
			require.False(t, strings.HasPrefix(ti.LastErr, "poison task"), "reason %q", ti.LastErr)
			require.Contains(t, ti.LastErr, c.reason)
		})
	}
	require.Equal(t, 2.0, gatherValue(t, b.reg, "invalidator_dead_letters_total", map[string]string{"reason": "retries_exhausted"}))
	require.Zero(t, gatherValue(t, b.reg, "invalidator_dead_letters_total", map[string]string{"reason": "poison"}))
	require.Equal(t, 4.0, gatherValue(t, b.reg, "invalidator_retries_total", map[string]string{"queue": queue}))
}

// A failed task waits for the backoff of its own queue's class, not the
// default class's: the slow class backs off for at least half an hour.
func TestRetryWaitsForItsClassBackoff(t *testing.T) {
	t.Parallel()
	b := startRulesWorker(t, rulesPolicy)
	const queue = "invalidator-slow"
	before := time.Now()
	info := b.enqueue(t, task(t, tasks.Event{Name: "lazy.changed", Attrs: map[string]string{"id": "1"}, Target: "elsewhere"}),
		asynq.Queue(queue), asynq.MaxRetry(5))
	var ti *asynq.TaskInfo
	require.Eventually(t, func() bool {
		var err error
		ti, err = b.insp.GetTaskInfo(queue, info.ID)
		require.NoError(t, err)
		return ti.State == asynq.TaskStateRetry
	}, 10*time.Second, 5*time.Millisecond)
	// Equal jitter: at least half of backoff_base.
	require.Greater(t, ti.NextProcessAt.Sub(before), 29*time.Minute, "retry due at %s", ti.NextProcessAt)
}
