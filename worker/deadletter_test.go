package worker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/internal/wake"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// deadPolicy: standard tasks die at their first failure, patient ones
// after three retries.
const deadPolicy = `
version: 1
default_class: standard
classes:
  standard: {ttl: 1m, max_retry: 0, timeout: 20s, backoff_base: 10ms, backoff_max: 10ms}
  patient: {ttl: 1m, max_retry: 3, backoff_base: 10ms, backoff_max: 10ms}
families:
  item:
    template: "item:{id}"
    class: standard
`

const (
	qStandard = "invalidator-standard"
	qPatient  = "invalidator-patient"
)

// cmdFault fails the commands of a client that match, while on.
type cmdFault struct {
	on    atomic.Bool
	match func(args []any) bool
}

func (f *cmdFault) hit(c redis.Cmder) bool { return f.on.Load() && f.match(c.Args()) }

func (f *cmdFault) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *cmdFault) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, c redis.Cmder) error {
		if f.hit(c) {
			err := fmt.Errorf("injected fault on %v", c.Name())
			c.SetErr(err)
			return err
		}
		return next(ctx, c)
	}
}
func (f *cmdFault) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if f.hit(c) {
				err := fmt.Errorf("injected fault on %v", c.Name())
				for _, c := range cmds {
					c.SetErr(err)
				}
				return err
			}
		}
		return next(ctx, cmds)
	}
}

// faultOn fails the commands of rdb that match while the returned fault is
// on (it starts on).
func faultOn(rdb redis.UniversalClient, match func(args []any) bool) *cmdFault {
	f := &cmdFault{match: match}
	f.on.Store(true)
	rdb.AddHook(f)
	return f
}

// argPrefix matches a command with an argument that starts with prefix.
func argPrefix(name, prefix string) func([]any) bool {
	return func(args []any) bool {
		if len(args) == 0 || !strings.EqualFold(fmt.Sprint(args[0]), name) {
			return false
		}
		for _, a := range args[1:] {
			if s, ok := a.(string); ok && strings.HasPrefix(s, prefix) {
				return true
			}
		}
		return false
	}
}

// argEqual matches a command name with an argument equal to arg.
func argEqual(name, arg string) func([]any) bool {
	return func(args []any) bool {
		if len(args) == 0 || !strings.EqualFold(fmt.Sprint(args[0]), name) {
			return false
		}
		for _, a := range args[1:] {
			if s, ok := a.(string); ok && s == arg {
				return true
			}
		}
		return false
	}
}

type deadBundle struct {
	queue   redis.UniversalClient
	cache   redis.UniversalClient
	insp    *asynq.Inspector
	aq      *asynq.Client
	reg     *prometheus.Registry
	metrics *Metrics
}

func deadSetup(t *testing.T) *deadBundle {
	t.Helper()
	b := &deadBundle{queue: redistest.Client(t), cache: redistest.Client(t), reg: prometheus.NewRegistry()}
	b.insp = asynq.NewInspectorFromRedisClient(b.queue)
	b.aq = asynq.NewClientFromRedisClient(b.queue)
	m, err := NewMetrics(b.reg)
	require.NoError(t, err)
	b.metrics = m
	return b
}

func (b *deadBundle) start(t *testing.T, mutate func(*Config)) *Worker {
	t.Helper()
	p, err := keyspec.Parse("dead.yaml", []byte(deadPolicy))
	require.NoError(t, err)
	cfg := Config{Queue: b.queue, Cache: b.cache, Policy: p, Logger: quiet(), Metrics: b.metrics,
		PollInterval: time.Millisecond, RetryCheckInterval: 50 * time.Millisecond, ShutdownTimeout: time.Second,
		DeadLetterSweep: 20 * time.Millisecond}
	if mutate != nil {
		mutate(&cfg)
	}
	w, err := New(cfg)
	require.NoError(t, err)
	runUntilCleanup(t, w)
	return w
}

// enqueueKeys enqueues a delete of keys on queue and returns its task ID.
func (b *deadBundle) enqueueKeys(t *testing.T, queue string, keys ...string) string {
	t.Helper()
	payload, err := tasks.Marshal(tasks.DeleteKeys{Keys: keys})
	require.NoError(t, err)
	info, err := b.aq.Enqueue(asynq.NewTask(tasks.KindDeleteKeys, payload), asynq.Queue(queue), asynq.MaxRetry(queueMaxRetry(queue)))
	require.NoError(t, err)
	return info.ID
}

func queueMaxRetry(queue string) int {
	if queue == qPatient {
		return 3
	}
	return 0
}

// waitState waits until asynq has the task in state.
func (b *deadBundle) waitState(t *testing.T, queue, id string, state asynq.TaskState) {
	t.Helper()
	require.Eventually(t, func() bool {
		ti, err := b.insp.GetTaskInfo(queue, id)
		return err == nil && ti.State == state
	}, 15*time.Second, 2*time.Millisecond, "task %s never %s", id, state)
}

// waitRecorded waits until the record holds the task and returns it.
func (b *deadBundle) waitRecorded(t *testing.T, queue, id string) DeadTask {
	t.Helper()
	var got DeadTask
	require.Eventually(t, func() bool {
		dt, ok, err := ReadDeadTask(context.Background(), b.queue, queue, id)
		require.NoError(t, err)
		got = dt
		return ok
	}, 15*time.Second, 2*time.Millisecond, "task %s never recorded", id)
	return got
}

func (b *deadBundle) counter(t *testing.T, c *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	return testutil.ToFloat64(c.WithLabelValues(labels...))
}

// asynq v0.26's archive and task keys are what the sweep and the CLI
// read; an asynq upgrade that moves them fails here, not in production.
func TestAsynqKeyLayout(t *testing.T) {
	t.Parallel()
	b := deadSetup(t)
	ctx := context.Background()
	const q = "invalidator-layout"
	info, err := b.aq.Enqueue(asynq.NewTask(tasks.KindDeleteKeys, []byte("x")), asynq.Queue(q), asynq.ProcessIn(time.Hour))
	require.NoError(t, err)
	states, err := AsynqTaskStates(ctx, b.queue, q, []string{info.ID, "no-such-task"})
	require.NoError(t, err)
	require.Equal(t, []string{"scheduled", ""}, states)

	before := time.Now().Unix()
	require.NoError(t, b.insp.ArchiveTask(q, info.ID))
	score, err := b.queue.ZScore(ctx, asynqArchivedKey(q), info.ID).Result()
	require.NoError(t, err, "asynq's archive is no longer the sorted set %s", asynqArchivedKey(q))
	require.InDelta(t, float64(before), score, 2, "the archive's score is no longer the archive time in Unix seconds")
	states, err = AsynqTaskStates(ctx, b.queue, q, []string{info.ID})
	require.NoError(t, err)
	require.Equal(t, []string{"archived"}, states)

	// RunArchivedTasks does what asynq's RunTask does.
	ran, err := RunArchivedTasks(ctx, b.queue, q, []string{info.ID, "no-such-task"})
	require.NoError(t, err)
	require.Equal(t, []bool{true, false}, ran)
	ti, err := b.insp.GetTaskInfo(q, info.ID)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, ti.State)
	qi, err := b.insp.GetQueueInfo(q)
	require.NoError(t, err)
	require.Equal(t, 1, qi.Pending)
	require.Zero(t, qi.Archived)
	pending, err := b.insp.ListPendingTasks(q)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, info.ID, pending[0].ID)
	// and an asynq server runs it.
	srv := asynq.NewServerFromRedisClient(b.queue, asynq.Config{Queues: map[string]int{q: 1}, Logger: asynqLogger{l: quiet()},
		TaskCheckInterval: time.Millisecond})
	ranIt := make(chan string, 1)
	require.NoError(t, srv.Start(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		ranIt <- id
		return nil
	})))
	defer srv.Shutdown()
	select {
	case id := <-ranIt:
		require.Equal(t, info.ID, id)
	case <-time.After(10 * time.Second):
		t.Fatal("asynq never ran the task RunArchivedTasks put back")
	}
	ran, err = RunArchivedTasks(ctx, b.queue, q, []string{info.ID})
	require.NoError(t, err)
	require.Equal(t, []bool{false}, ran)

	// The record shares asynq's hash tag, so scripts may read both.
	require.Contains(t, deadRecordKey(q), "{"+q+"}")
	require.Contains(t, asynqArchivedKey(q), "{"+q+"}")
}

// The worker writes a task to the record before asynq archives it:
// retries exhausted, and poison.
func TestDeadLetterRecordedBeforeArchive(t *testing.T) {
	t.Parallel()
	b := deadSetup(t)
	ctx := context.Background()
	// Order of the record writes and asynq's archive scripts.
	var mu sync.Mutex
	var order []string
	faultOn(b.queue, func(args []any) bool {
		name := strings.ToLower(fmt.Sprint(args[0]))
		for _, a := range args[1:] {
			s, _ := a.(string)
			switch {
			case name == "hset" && s == deadRecordKey(qStandard):
				mu.Lock()
				order = append(order, "record "+fmt.Sprint(args[2]))
				mu.Unlock()
				return false
			case name == "evalsha" && s == asynqArchivedKey(qStandard) && slices.Contains(args, any("asynq:{"+qStandard+"}:active")):
				// The processor's archive: [task, active, lease, archived, ...], then the ID.
				mu.Lock()
				order = append(order, "archive "+fmt.Sprint(args[3+9]))
				mu.Unlock()
				return false
			}
		}
		return false
	})
	faultOn(b.cache, argPrefix("unlink", "")) // the cache refuses every delete
	// Polling keeps the asynq server on b.queue, where the hook above sees
	// its archive script; with wake-ups it runs on a client of its own.
	b.start(t, func(c *Config) { c.PollOnly = true })

	failed := b.enqueueKeys(t, qStandard, "k1")
	poisoned, err := b.aq.Enqueue(asynq.NewTask(tasks.KindDeleteKeys, []byte{0xde, 0xad}), asynq.Queue(qStandard), asynq.MaxRetry(5))
	require.NoError(t, err)
	b.waitState(t, qStandard, failed, asynq.TaskStateArchived)
	b.waitState(t, qStandard, poisoned.ID, asynq.TaskStateArchived)

	dt, ok, err := ReadDeadTask(ctx, b.queue, qStandard, failed)
	require.NoError(t, err)
	require.True(t, ok, "a task that exhausted its retries is not in the record")
	ti, err := b.insp.GetTaskInfo(qStandard, failed)
	require.NoError(t, err)
	require.Equal(t, ti.LastErr, dt.Reason)
	require.Contains(t, dt.Reason, "injected fault")
	require.Equal(t, tasks.KindDeleteKeys, dt.Kind)
	require.Equal(t, ti.Payload, dt.Payload)
	require.Equal(t, qStandard, dt.Queue)
	require.Equal(t, DeadSourceWorker, dt.Source)
	require.Zero(t, dt.MaxRetry)
	require.Equal(t, 20*time.Second, dt.Timeout, "the class's timeout")
	require.WithinDuration(t, time.Now(), dt.FailedAt, 10*time.Second)
	require.WithinDuration(t, ti.LastFailedAt, dt.FailedAt, 2*time.Second)

	dp, ok, err := ReadDeadTask(ctx, b.queue, qStandard, poisoned.ID)
	require.NoError(t, err)
	require.True(t, ok, "a poison task is not in the record")
	require.True(t, strings.HasPrefix(dp.Reason, "poison task:"), dp.Reason)
	require.Zero(t, dp.Retried)
	require.Equal(t, 5, dp.MaxRetry)

	mu.Lock()
	defer mu.Unlock()
	for _, id := range []string{failed, poisoned.ID} {
		r, a := slices.Index(order, "record "+id), slices.Index(order, "archive "+id)
		require.True(t, r >= 0 && a >= 0, "order %v", order)
		require.Less(t, r, a, "task %s was archived before it was recorded: %v", id, order)
	}
	require.Equal(t, 2.0, b.counter(t, b.metrics.deadRecordsTotal, qStandard, DeadSourceWorker))
}

// A poison task that cannot be recorded stays out of the archive while it
// has retries left; once the record can be written, it goes to both.
func TestDeadLetterRecordFailureKeepsPoisonOutOfArchive(t *testing.T) {
	t.Parallel()
	b := deadSetup(t)
	fault := faultOn(b.queue, argPrefix("hset", "invalidator:dead:"))
	b.start(t, nil)
	info, err := b.aq.Enqueue(asynq.NewTask(tasks.KindDeleteKeys, []byte{0xde, 0xad}), asynq.Queue(qPatient), asynq.MaxRetry(3))
	require.NoError(t, err)
	b.waitState(t, qPatient, info.ID, asynq.TaskStateRetry)
	require.GreaterOrEqual(t, b.counter(t, b.metrics.deadRecordErrors, qPatient), 1.0)
	ti, err := b.insp.GetTaskInfo(qPatient, info.ID)
	require.NoError(t, err)
	require.Contains(t, ti.LastErr, "not archived yet: writing the dead-letter record failed")

	fault.on.Store(false)
	b.waitState(t, qPatient, info.ID, asynq.TaskStateArchived)
	dt := b.waitRecorded(t, qPatient, info.ID)
	require.True(t, strings.HasPrefix(dt.Reason, "poison task:"), dt.Reason)
}

// On its last attempt a task is archived whatever the handler returns; if
// the record cannot be written then, the sweep copies it from the archive.
func TestDeadLetterRecordFailureOnLastAttemptIsSwept(t *testing.T) {
	t.Parallel()
	b := deadSetup(t)
	faultOn(b.cache, argPrefix("unlink", ""))
	fault := faultOn(b.queue, argPrefix("hset", "invalidator:dead:"))
	// The sweep's scripts on the record fail, not its lock script: a worker
	// that fails to take the lock asks again only after one to two lock
	// TTLs (5 to 10 s), a wait this test is not about.
	sweepFault := faultOn(b.queue, argEqual("evalsha", deadRecordKey(qStandard)))
	b.start(t, nil)
	id := b.enqueueKeys(t, qStandard, "k")
	b.waitState(t, qStandard, id, asynq.TaskStateArchived)
	require.GreaterOrEqual(t, b.counter(t, b.metrics.deadRecordErrors, qStandard), 1.0)
	_, ok, err := ReadDeadTask(context.Background(), b.queue, qStandard, id)
	require.NoError(t, err)
	require.False(t, ok)

	fault.on.Store(false)
	sweepFault.on.Store(false)
	dt := b.waitRecorded(t, qStandard, id)
	require.Equal(t, DeadSourceSweep, dt.Source)
	require.Contains(t, dt.Reason, "injected fault")
	require.False(t, dt.FailedAt.IsZero())
	// The sweep counts a copy after writing it, so the count may trail the record.
	require.Eventually(t, func() bool {
		return b.counter(t, b.metrics.deadRecordsTotal, qStandard, DeadSourceSweep) == 1.0
	}, 5*time.Second, time.Millisecond)
}

// A task archived by an operator never passes the worker's handler: the
// sweep records it, with a reason that says so and no failure time.
func TestDeadLetterSweepCopiesOperatorArchive(t *testing.T) {
	t.Parallel()
	b := deadSetup(t)
	b.start(t, nil)
	info, err := b.aq.Enqueue(asynq.NewTaskWithHeaders(tasks.KindDeleteKeys, []byte("x"), map[string]string{"h": "v"}),
		asynq.Queue(qStandard), asynq.ProcessIn(time.Hour), asynq.MaxRetry(7), asynq.Timeout(3*time.Second))
	require.NoError(t, err)
	before := time.Now().Truncate(time.Second)
	require.NoError(t, b.insp.ArchiveTask(qStandard, info.ID))
	dt := b.waitRecorded(t, qStandard, info.ID)
	require.Equal(t, ReasonArchivedByOperator, dt.Reason)
	require.True(t, dt.FailedAt.IsZero(), "failed at %s", dt.FailedAt)
	require.False(t, dt.ArchivedAt.Before(before), "archived at %s, before %s", dt.ArchivedAt, before)
	require.WithinDuration(t, time.Now(), dt.ArchivedAt, 10*time.Second)
	require.Equal(t, DeadSourceSweep, dt.Source)
	require.Equal(t, map[string]string{"h": "v"}, dt.Headers)
	require.Equal(t, 7, dt.MaxRetry)
	require.Equal(t, 3*time.Second, dt.Timeout)
	require.Equal(t, []byte("x"), dt.Payload)
}

// One worker of the fleet sweeps a queue; another takes over when it
// stops.
func TestDeadLetterSweepLock(t *testing.T) {
	t.Parallel()
	b := deadSetup(t)
	ctx := context.Background()
	p, err := keyspec.Parse("dead.yaml", []byte(deadPolicy))
	require.NoError(t, err)
	w, err := New(Config{Queue: b.queue, Policy: p, Logger: quiet(), DeadLetterSweep: time.Hour})
	require.NoError(t, err)
	sweeper := func(token string) *deadSweeper {
		return &deadSweeper{w: w, log: quiet(), insp: b.insp, token: token, interval: time.Second,
			held: map[string]bool{}, newest: map[string]float64{}, fullAt: map[string]time.Time{}}
	}
	one, two := sweeper("one"), sweeper("two")
	require.NoError(t, one.sweep(ctx, qStandard))
	require.NoError(t, two.sweep(ctx, qStandard))
	require.True(t, one.held[qStandard])
	require.False(t, two.held[qStandard])
	require.Equal(t, "one", b.queue.Get(ctx, deadSweeperKey(qStandard)).Val())
	ttl := b.queue.PTTL(ctx, deadSweeperKey(qStandard)).Val()
	require.Positive(t, ttl, "a dead sweeper's lock must lapse")

	one.release()
	require.NoError(t, two.sweep(ctx, qStandard))
	require.True(t, two.held[qStandard])
	require.NoError(t, one.sweep(ctx, qStandard))
	require.False(t, one.held[qStandard])
}

// The sweep reads newest first and stops at the archive time it has seen,
// but a task archived by a host whose clock is behind is still found, by
// the overlap or by the next full sweep.
func TestDeadLetterSweepIncremental(t *testing.T) {
	t.Parallel()
	b := deadSetup(t)
	ctx := context.Background()
	p, err := keyspec.Parse("dead.yaml", []byte(deadPolicy))
	require.NoError(t, err)
	w, err := New(Config{Queue: b.queue, Policy: p, Logger: quiet(), Metrics: b.metrics, DeadLetterSweep: time.Hour})
	require.NoError(t, err)
	s := &deadSweeper{w: w, log: quiet(), insp: b.insp, token: "t", interval: time.Second,
		held: map[string]bool{}, newest: map[string]float64{}, fullAt: map[string]time.Time{}}
	archive := func(at time.Time) string {
		info, err := b.aq.Enqueue(asynq.NewTask(tasks.KindDeleteKeys, []byte("x")), asynq.Queue(qStandard), asynq.ProcessIn(time.Hour))
		require.NoError(t, err)
		require.NoError(t, b.insp.ArchiveTask(qStandard, info.ID))
		// As if archived by a host whose clock read at.
		require.NoError(t, b.queue.ZAdd(ctx, asynqArchivedKey(qStandard), redis.Z{Score: float64(at.Unix()), Member: info.ID}).Err())
		return info.ID
	}
	recorded := func(id string) bool {
		_, ok, err := ReadDeadTask(ctx, b.queue, qStandard, id)
		require.NoError(t, err)
		return ok
	}
	now := time.Now()
	first := archive(now)
	require.NoError(t, s.sweep(ctx, qStandard))
	require.True(t, recorded(first))

	skewed := archive(now.Add(-sweepOverlap / 2)) // within the overlap
	late := archive(now.Add(-2 * sweepOverlap))   // beyond it
	require.NoError(t, s.sweep(ctx, qStandard))
	require.True(t, recorded(skewed))
	require.False(t, recorded(late), "an incremental sweep read the whole archive")
	s.fullAt[qStandard] = now.Add(-fullSweepEvery)
	require.NoError(t, s.sweep(ctx, qStandard))
	require.True(t, recorded(late), "the full sweep missed a task")
	require.Equal(t, 3.0, b.counter(t, b.metrics.deadRecordsTotal, qStandard, DeadSourceSweep))
}

// A dead task put back by other means than `dead retry` (the dashboard)
// that then succeeds leaves the record.
func TestDeadLetterSuccessAfterRunForgets(t *testing.T) {
	t.Parallel()
	b := deadSetup(t)
	ctx := context.Background()
	fault := faultOn(b.cache, argPrefix("unlink", ""))
	b.start(t, nil)
	require.NoError(t, b.cache.Set(ctx, "k", 1, 0).Err())
	id := b.enqueueKeys(t, qStandard, "k")
	b.waitState(t, qStandard, id, asynq.TaskStateArchived)
	b.waitRecorded(t, qStandard, id)

	fault.on.Store(false)
	require.NoError(t, b.insp.RunTask(qStandard, id))
	require.Eventually(t, func() bool {
		_, ok, err := ReadDeadTask(ctx, b.queue, qStandard, id)
		require.NoError(t, err)
		return !ok
	}, 15*time.Second, 2*time.Millisecond, "a task that succeeded stayed in the record")
	require.Zero(t, b.cache.Exists(ctx, "k").Val())
}

// DropDeadTasks removes an entry only as it was read: a task that died
// again meanwhile keeps its newer entry.
func TestDropDeadTasksOnlyUnchanged(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	var ts []DeadTask
	for i := range 1200 { // more than one batch
		ts = append(ts, DeadTask{ID: fmt.Sprintf("t%d", i), Queue: qStandard, Kind: tasks.KindDeleteKeys, Payload: []byte{0, 0xff, byte(i)},
			Reason: "r", FailedAt: time.UnixMilli(1_700_000_000_123), Source: DeadSourceWorker})
	}
	for _, dt := range ts {
		require.NoError(t, writeDeadTask(ctx, rdb, dt))
	}
	read, err := ReadDeadLetter(ctx, rdb, qStandard)
	require.NoError(t, err)
	require.Len(t, read, len(ts))
	got, _, err := ReadDeadTask(ctx, rdb, qStandard, "t7")
	require.NoError(t, err)
	require.Equal(t, []byte{0, 0xff, 7}, got.Payload, "payload bytes must round-trip")
	require.Equal(t, time.UnixMilli(1_700_000_000_123), got.FailedAt)

	again := ts[7]
	again.Reason = "died again"
	require.NoError(t, writeDeadTask(ctx, rdb, again))
	n, err := DropDeadTasks(ctx, rdb, qStandard, read)
	require.NoError(t, err)
	require.Equal(t, len(ts)-1, n)
	left, err := ReadDeadLetter(ctx, rdb, qStandard)
	require.NoError(t, err)
	require.Len(t, left, 1)
	require.Equal(t, "died again", left[0].Reason)

	n, err = PurgeDeadTasks(ctx, rdb, qStandard, []string{"t7", "t8"})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	size, err := DeadLetterSize(ctx, rdb, qStandard)
	require.NoError(t, err)
	require.Zero(t, size)
}

// A record entry of another format is shown, not dropped or misread.
func TestDeadLetterUndecodableEntry(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	require.NoError(t, rdb.HSet(ctx, deadRecordKey(qStandard), "a", `{"v":99}`, "b", "garbage").Err())
	ts, err := ReadDeadLetter(ctx, rdb, qStandard)
	require.NoError(t, err)
	require.Len(t, ts, 2)
	require.ErrorContains(t, ts[0].Undecodable, "format version 99")
	require.Error(t, ts[1].Undecodable)
	err = RequeueDeadTask(ctx, asynq.NewClientFromRedisClient(rdb), rdb, ts[0])
	require.ErrorContains(t, err, "cannot re-enqueue")
}

// A task re-enqueued from the record keeps its ID, headers and budget.
func TestRequeueDeadTask(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	aq := asynq.NewClientFromRedisClient(rdb)
	dt := DeadTask{ID: "family-1", Queue: qStandard, Kind: tasks.KindDeleteFamily, Payload: []byte("p"),
		Headers: map[string]string{tasks.HeaderScan: "first"}, MaxRetry: 4, Timeout: 7 * time.Second}
	require.NoError(t, RequeueDeadTask(ctx, aq, rdb, dt))
	require.EqualValues(t, 1, rdb.LLen(ctx, wake.Key(qStandard)).Val(), "an idle worker must be woken for it")
	ti, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(qStandard, "family-1")
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, ti.State)
	require.Equal(t, dt.Headers, ti.Headers)
	require.Equal(t, 4, ti.MaxRetry)
	require.Equal(t, 7*time.Second, ti.Timeout)
	require.ErrorIs(t, RequeueDeadTask(ctx, aq, rdb, dt), asynq.ErrTaskIDConflict, "the same task twice")
}

// On a Redis Cluster the record's scripts touch one slot: asynq's archive
// and the record of a queue share its hash tag.
func TestDeadLetterOnCluster(t *testing.T) {
	t.Parallel()
	cluster := redistest.Cluster(t)
	b := deadSetup(t)
	b.queue = cluster
	b.insp = asynq.NewInspectorFromRedisClient(cluster)
	b.aq = asynq.NewClientFromRedisClient(cluster)
	// Queue names of this test only: the cluster is shared.
	p := redistest.Prefix(t)
	policy := strings.ReplaceAll(deadPolicy, "max_retry: 0,", "max_retry: 0, queue: "+p+"-standard,")
	pol, err := keyspec.Parse("dead.yaml", []byte(policy))
	require.NoError(t, err)
	faultOn(b.cache, argPrefix("unlink", ""))
	b.start(t, func(c *Config) { c.Policy = pol })
	q := p + "-standard"

	dead := b.enqueueKeys(t, q, "k")
	info, err := b.aq.Enqueue(asynq.NewTask(tasks.KindDeleteKeys, []byte("x")), asynq.Queue(q), asynq.ProcessIn(time.Hour))
	require.NoError(t, err)
	require.NoError(t, b.insp.ArchiveTask(q, info.ID))
	require.Equal(t, DeadSourceWorker, b.waitRecorded(t, q, dead).Source)
	require.Equal(t, DeadSourceSweep, b.waitRecorded(t, q, info.ID).Source)
	read, err := ReadDeadLetter(context.Background(), cluster, q)
	require.NoError(t, err)
	n, err := DropDeadTasks(context.Background(), cluster, q, read)
	require.NoError(t, err)
	require.Equal(t, 2, n)
}

// A worker that lost the sweeper lock of a queue to another asks for it
// again only after one to two lock TTLs, not at every tick: at
// every tick, each idle worker of a fleet ran a lock script per queue every
// DeadLetterSweep, about 100 a second on the queue Redis at 64 workers and
// three queues, for a lock one of them holds. The holder sweeps at every
// tick.
func TestDeadLetterSweepLockBackOff(t *testing.T) {
	t.Parallel()
	b := deadSetup(t)
	ctx := context.Background()
	p, err := keyspec.Parse("dead.yaml", []byte(deadPolicy))
	require.NoError(t, err)
	w, err := New(Config{Queue: b.queue, Policy: p, Logger: quiet(), DeadLetterSweep: time.Hour})
	require.NoError(t, err)
	sweeper := func(token string) *deadSweeper {
		return &deadSweeper{w: w, log: quiet(), insp: b.insp, token: token, interval: time.Second,
			held: map[string]bool{}, newest: map[string]float64{}, fullAt: map[string]time.Time{}, nextAsk: map[string]time.Time{}}
	}
	one, two := sweeper("one"), sweeper("two")
	now := time.Now()
	for _, s := range []*deadSweeper{one, two} {
		require.True(t, s.askDue(qStandard, now), "the first sweep asks for the lock")
		require.NoError(t, s.sweep(ctx, qStandard))
		s.asked(qStandard, now)
	}
	require.True(t, one.askDue(qStandard, now.Add(time.Second)), "the holder sweeps at every tick")
	ttl := two.lockTTL()
	require.False(t, two.askDue(qStandard, now.Add(time.Second)), "the other worker asked again at the next tick")
	require.False(t, two.askDue(qStandard, now.Add(ttl-time.Millisecond)))
	require.True(t, two.askDue(qStandard, now.Add(2*ttl)), "the other worker must ask again within two lock TTLs, to take over from a dead holder")
}
