package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/invalidator/invalidator/internal/redisconn"
	"github.com/invalidator/invalidator/internal/wake"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// Worker applies invalidation tasks from asynq queues to the cache.
// It is an asynq.Handler, so it can also be mounted on a caller's own
// asynq.Server; Run starts a server of its own.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	state   atomic.Pointer[policyState] // swapped whole by SetPolicy
	metrics *Metrics                    // nil: no metrics
	rand    *lockedRand
	limiter *rate.Limiter // nil: family scans unthrottled
	aq      *asynq.Client // enqueues continuations of long family scans
	wake    *wake.Pusher  // wakes idle workers for the tasks this one enqueues
	now     func() time.Time

	// inflight is the tasks ProcessTask runs, for the heartbeat (heartbeat.go).
	inflight *inflight

	// targets are the caches tasks address by name ("" is Config.Cache).
	targets map[string]*target
}

// target is one cache the worker applies tasks to.
type target struct {
	client redis.UniversalClient
	// batch merges the key deletes of concurrent tasks for this cache. It
	// holds no goroutine while idle, so the Worker needs no Close.
	batch *batcher
}

// New validates cfg and returns a Worker.
func New(cfg Config) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	w := &Worker{
		cfg:     cfg,
		log:     cfg.Logger,
		metrics: cfg.Metrics,
		rand:    &lockedRand{r: cfg.Rand},
		aq:      asynq.NewClientFromRedisClient(cfg.Queue),
		wake:    wake.NewPusher(cfg.Queue, cfg.Logger.With("component", "wake")),
		now:     time.Now,
	}
	w.inflight = newInflight()
	w.state.Store(newPolicyState(cfg.Policy, nil))
	w.targets = make(map[string]*target, len(cfg.Targets)+1)
	w.targets[""] = w.newTarget("", cfg.Cache)
	for name, c := range cfg.Targets {
		w.targets[name] = w.newTarget(name, c)
	}
	if cfg.FamilyRateLimit > 0 {
		burst := max(int(cfg.FamilyRateLimit), cfg.DeleteChunk)
		w.limiter = rate.NewLimiter(rate.Limit(cfg.FamilyRateLimit), burst)
	}
	return w, nil
}

// Queues returns the asynq queues this worker serves, with their weights
// from the policy's classes, and the retired shard queues Run found, at
// weight 1 (retired.go).
func (w *Worker) Queues() map[string]int {
	st := w.state.Load()
	qs := st.policy.QueueWeights()
	for _, q := range st.retired {
		qs[q] = max(qs[q], 1)
	}
	return qs
}

// Policy returns the policy the worker currently applies.
func (w *Worker) Policy() *keyspec.Policy { return w.state.Load().policy }

// SetPolicy swaps in a new policy for every task that starts after it
// returns; tasks already running finish under the old one. Modes, families,
// events, TTLs and retry budgets change at once. The served queues and their
// weights are fixed when Run starts the asynq server, so a policy that
// changes them is refused (ErrRestartRequired) and the old policy stays.
func (w *Worker) SetPolicy(p *keyspec.Policy) error {
	if p == nil {
		return errors.New("worker: SetPolicy(nil)")
	}
	old := w.state.Load().policy.QueueWeights()
	if now := p.QueueWeights(); !maps.Equal(old, now) {
		return fmt.Errorf("%w: the policy changes the served queues or their weights (%s → %s); restart the worker to apply it",
			ErrRestartRequired, formatWeights(old), formatWeights(now))
	}
	// Same served queues, so the same class queues: the retired shard
	// queues found at start stay retired shards of the new policy's classes.
	w.state.Store(newPolicyState(p, w.state.Load().retired))
	return nil
}

// ErrRestartRequired is returned by SetPolicy for a policy the running
// worker cannot switch to.
var ErrRestartRequired = errors.New("policy change needs a worker restart")

func formatWeights(w map[string]int) string {
	parts := make([]string, 0, len(w))
	for _, q := range slices.Sorted(maps.Keys(w)) {
		parts = append(parts, fmt.Sprintf("%s:%d", q, w[q]))
	}
	return strings.Join(parts, " ")
}

// policyState is what a policy decides, precomputed; it is replaced whole,
// never changed, so a task sees one consistent policy.
type policyState struct {
	policy  *keyspec.Policy
	classOf map[string]*keyspec.Class // queue -> class, for backoff and second deletes
	retired []string                  // retired shard queues served too (retired.go)
}

func newPolicyState(p *keyspec.Policy, retired []string) *policyState {
	st := &policyState{policy: p, classOf: make(map[string]*keyspec.Class), retired: retired}
	for _, q := range retired {
		if c := retiredClass(p, q); c != nil {
			st.classOf[q] = c
		}
	}
	// Classes sharing a queue: the first by name sets its backoff.
	for _, name := range slices.Sorted(maps.Keys(p.Classes)) {
		c := p.Classes[name]
		for _, q := range append(c.Queues(), c.Queue) {
			if _, ok := st.classOf[q]; !ok {
				st.classOf[q] = c
			}
		}
	}
	return st
}

// queueClass returns the class of a queue, or the default class.
func (st *policyState) queueClass(queue string) *keyspec.Class {
	if c, ok := st.classOf[queue]; ok {
		return c
	}
	return st.defaultClass()
}

func (st *policyState) defaultClass() *keyspec.Class {
	if c, err := st.policy.Class(st.policy.DefaultClass); err == nil {
		return c
	}
	return &keyspec.Class{BackoffBase: keyspec.DefaultBackoffBase, BackoffMax: keyspec.DefaultBackoffMax}
}

// janitorInterval is how often asynq's janitor looks for expired
// completed tasks in each queue (see ServerConfig).
const janitorInterval = time.Minute

// ServerConfig returns the asynq.Config that Run uses: the worker's queues,
// concurrency, polling interval, retry schedule and error logging. Callers
// that run their own asynq.Server start from it; such a server polls every
// PollInterval, since the wake-ups are wired into Run's server only.
func (w *Worker) ServerConfig() asynq.Config {
	return asynq.Config{
		Concurrency:              w.cfg.Concurrency,
		Queues:                   w.Queues(),
		TaskCheckInterval:        w.cfg.PollInterval,
		DelayedTaskCheckInterval: w.cfg.RetryCheckInterval,
		// The janitor deletes the completed tasks kept by asynq.Retention,
		// which no producer of these queues sets, so its sets stay empty;
		// at asynq's 8 s it was a script per queue per worker every 8 s, a
		// seventh of what an idle fleet sent the queue Redis.
		JanitorInterval: janitorInterval,
		ShutdownTimeout: w.cfg.ShutdownTimeout,
		RetryDelayFunc:  w.retryDelay,
		ErrorHandler:    asynq.ErrorHandlerFunc(w.handleError),
		Logger:          asynqLogger{l: w.log.With("component", "asynq")},
		// asynq logs every idle poll at debug level; at a 5ms poll interval
		// that is noise, so its own level stays at info.
		LogLevel: asynq.InfoLevel,
	}
}

// Run serves the queues until ctx is cancelled, then shuts down gracefully:
// no new tasks are taken, in-flight ones get Config.ShutdownTimeout to
// finish, and the rest go back to their queue for another worker.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.checkTopology(ctx); err != nil {
		return err
	}
	if err := w.serveRetiredShards(); err != nil {
		return err
	}
	qc, waiter, closeQC := w.serverClient()
	defer closeQC()
	srv := asynq.NewServerFromRedisClient(qc, w.ServerConfig())
	// Heartbeats start before the first task and stop after the last one
	// has finished or gone back to its queue (rescue.go).
	fleet := w.startFleet(ctx)
	if err := srv.Start(w); err != nil {
		fleet.stop(ctx)
		return fmt.Errorf("start worker: %w", err)
	}
	sweepDone := w.startDeadLetterSweep(ctx) // ends with ctx
	auditsDone := w.startAudits(ctx)         // ends with ctx
	mode := []any{"poll_interval", w.cfg.PollInterval.String()}
	if waiter != nil {
		mode = []any{"wake", true, "safety_poll", waiter.SafetyPoll().String()}
	}
	w.log.Info("worker started", append([]any{"queues", formatWeights(w.Queues()), "concurrency", w.cfg.Concurrency}, mode...)...)
	<-ctx.Done()
	w.log.Info("worker shutting down", "shutdown_timeout", w.cfg.ShutdownTimeout.String())
	if waiter != nil {
		// asynq's Shutdown waits for its dequeue loop, which may be
		// blocked in a wait for a wake-up.
		waiter.Stop()
	}
	srv.Shutdown()
	sweepDone()
	auditsDone()
	fleet.stop(ctx)
	w.wake.Wait()
	w.log.Info("worker stopped")
	return nil
}

// serverClient returns the queue client for the asynq server: with wake-ups
// on, a client of its own with a wake.Waiter hooked in (the hook blocks the
// client's dequeue calls, and hooks cannot be removed, so the caller's
// client is left alone), else Config.Queue. release frees what it made.
func (w *Worker) serverClient() (qc redis.UniversalClient, waiter *wake.Waiter, release func()) {
	if w.cfg.PollOnly {
		return w.cfg.Queue, nil, func() {}
	}
	waiter, err := wake.NewWaiter(wake.WaiterConfig{
		Queues:     slices.Sorted(maps.Keys(w.Queues())),
		SafetyPoll: w.cfg.SafetyPoll,
		Pusher:     w.wake,
		// One forwarder per interval across the fleet: asynq's forwarder
		// in every worker was most of an idle fleet's Redis load.
		ForwardInterval: w.cfg.RetryCheckInterval,
		Logger:          w.log.With("component", "wake"),
	})
	if err == nil {
		qc, err = wake.Dedicated(w.cfg.Queue)
	}
	if err != nil {
		w.log.Warn("wake-ups off: idle workers poll the queues every poll interval", "err", err.Error())
		return w.cfg.Queue, nil, func() {}
	}
	waiter.Attach(qc)
	if w.cfg.onWaiter != nil {
		w.cfg.onWaiter(waiter)
	}
	return qc, waiter, func() { _ = qc.Close() }
}

// enqueue enqueues a follow-up task (second delete, event fan-out, scan
// continuation) and wakes an idle worker for it.
func (w *Worker) enqueue(ctx context.Context, e tasks.Envelope) (*asynq.TaskInfo, error) {
	t, opts := e.Asynq()
	info, err := w.aq.EnqueueContext(ctx, t, opts...)
	if err == nil {
		w.wake.Wake(info.Queue, 1)
	}
	return info, err
}

// checkTopology refuses a plain client connected to one node of a Redis
// Cluster (see redisconn.CheckTopology): on the queue side asynq gets MOVED
// errors, and on the cache side a family scan would see only that node's
// keys and report success with the rest of the family still cached. The
// error matches redisconn.ErrClusterNode.
func (w *Worker) checkTopology(ctx context.Context) error {
	if err := redisconn.CheckTopology(ctx, w.cfg.Queue, redisconn.UseQueue, "queue Redis"); err != nil {
		return err
	}
	if w.cfg.Cache != w.cfg.Queue {
		if err := redisconn.CheckTopology(ctx, w.cfg.Cache, redisconn.UseCache, "cache Redis"); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(w.cfg.Targets)) {
		if err := redisconn.CheckTopology(ctx, w.cfg.Targets[name], redisconn.UseCache, fmt.Sprintf("cache target %q", name)); err != nil {
			return err
		}
	}
	return nil
}

// ProcessTask implements asynq.Handler. It decodes the task, applies it,
// and sorts failures: poison tasks go to the dead letter at once, the rest
// retry with their class's backoff.
func (w *Worker) ProcessTask(ctx context.Context, at *asynq.Task) error {
	id, _ := asynq.GetTaskID(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	log := taskLogger(w.log, id, at.Type(), retried, queue)
	defer w.inflight.begin(id, queue)()

	st := w.state.Load()
	err := w.apply(ctx, st, at, id, log)
	maxRetry, inAsynq := asynq.GetMaxRetry(ctx)
	switch {
	case !inAsynq || ctx.Err() != nil:
		// Outside an asynq server nothing is archived. Past the deadline
		// asynq has already judged the task by ctx.Err(), and the
		// ErrorHandler records it if asynq archives it.
	case err == nil && retried >= maxRetry:
		// Only a task put back from the dead letter runs past its budget.
		// (In a class with max_retry 0 that is every task: one HDEL more
		// per success, the price of not listing a replayed task as dead.)
		w.forgetDead(ctx, queue, id, log)
	case err != nil && (IsPoison(err) || retried >= maxRetry):
		// asynq archives the task when this returns: record it first.
		if rerr := w.recordDead(ctx, at, err, log); rerr != nil {
			if IsPoison(err) && retried < maxRetry {
				// A retry keeps it out of the archive until it can be
				// recorded. A task on its last attempt is archived
				// whatever it returns, and the sweep records it from there.
				return &retryError{cause: fmt.Errorf("%v (not archived yet: writing the dead-letter record failed: %v)", err, rerr),
					delay: backoff(st.queueClass(queue), retried, w.rand)}
			}
			return err
		}
		return &recordedError{cause: err}
	}
	if err == nil || IsPoison(err) {
		return err
	}
	return &retryError{cause: err, delay: backoff(st.queueClass(queue), retried, w.rand)}
}

func (w *Worker) apply(ctx context.Context, st *policyState, at *asynq.Task, id string, log *slog.Logger) error {
	if !tasks.IsKind(at.Type()) {
		return poison(fmt.Errorf("unknown task kind %q in an invalidator queue (known: %v); "+
			"only invalidator tasks may be enqueued on these queues", at.Type(), tasks.Kinds()))
	}
	t, err := tasks.Unmarshal(at.Type(), at.Payload())
	if err != nil {
		if errors.Is(err, tasks.ErrNewerFormat) {
			// Not poison: a newer worker in the fleet can run it.
			return err
		}
		return poison(err)
	}
	queue, _ := asynq.GetQueueName(ctx)
	class := st.queueClass(queue).Name
	start := time.Now()
	var family, target string
	var enqueuedAt time.Time
	switch t := t.(type) {
	case tasks.DeleteKeys:
		target, enqueuedAt = t.Target, t.EnqueuedAt
		err = w.applyDeleteKeys(ctx, st, t, at, log)
	case tasks.DeleteFamily:
		family, target, enqueuedAt = t.Family, t.Target, t.EnqueuedAt
		err = w.applyDeleteFamily(ctx, st, t, at, id, log)
	case tasks.BumpVersion:
		family, target, enqueuedAt = t.Family, t.Target, t.EnqueuedAt
		err = w.applyBumpVersion(ctx, st, t, log)
	case tasks.Event:
		target, enqueuedAt = t.Target, t.EnqueuedAt
		err = w.applyEvent(ctx, st, t, at, log)
	default:
		err = poison(fmt.Errorf("task kind %q decodes to %T, which this worker cannot apply; upgrade the worker", at.Type(), t))
	}
	if err == nil {
		w.metrics.applied(at.Type(), class, family, target, enqueuedAt)
		logApplied(log, start, enqueuedAt)
	}
	return err
}

func logApplied(log *slog.Logger, start, enqueuedAt time.Time) {
	if !debugOn(log) {
		return
	}
	attrs := []any{"took", time.Since(start).String()}
	if !enqueuedAt.IsZero() {
		attrs = append(attrs, "lag_ms", float64(time.Since(enqueuedAt).Microseconds())/1000)
	}
	log.Debug("applied", attrs...)
}

func (w *Worker) newTarget(name string, c redis.UniversalClient) *target {
	b := newBatcher(c, w.cfg.BatchMaxKeys, w.cfg.DeleteChunk, w.cfg.BatchInFlight)
	b.target, b.metrics = name, w.metrics
	return &target{client: c, batch: b}
}

// target returns the cache a task addresses.
func (w *Worker) target(name string) (*target, error) {
	if t, ok := w.targets[name]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("unknown cache target %q: configure it on this worker, or enqueue with an empty target for the default cache", name)
}

// retryDelay is asynq's RetryDelayFunc.
func (w *Worker) retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var re *retryError
	if errors.As(err, &re) {
		return re.delay
	}
	// Lease expiry and timeouts come from asynq itself, not the handler.
	return backoff(w.state.Load().defaultClass(), n, w.rand)
}

// handleError is asynq's ErrorHandler: every failure is logged, and the
// last one before the dead letter at error level with its reason.
func (w *Worker) handleError(ctx context.Context, at *asynq.Task, err error) {
	id, _ := asynq.GetTaskID(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	log := w.log.With("task_id", id, "kind", at.Type(), "retry", retried, "queue", queue)
	var recorded *recordedError
	if (IsPoison(err) || retried >= maxRetry) && !errors.As(err, &recorded) {
		// A failure asynq found itself (timeout, panic, lost lease), or
		// one ProcessTask could not record: asynq archives it next.
		_ = w.recordDead(ctx, at, err, log)
	}
	switch {
	case IsPoison(err):
		reason := deadPoison
		switch {
		case !tasks.IsKind(at.Type()):
			reason = deadUnknownKind
		case errors.Is(err, errMaxKeys):
			reason = deadMaxKeys
		}
		w.metrics.dead(at.Type(), reason)
		log.Error("task moved to dead letter", "reason", err.Error(), "summary", tasks.Describe(at.Type(), at.Payload()))
	case retried >= maxRetry:
		w.metrics.dead(at.Type(), deadRetriesExhausted)
		log.Error("task moved to dead letter: retries exhausted", "reason", err.Error(), "max_retry", maxRetry,
			"summary", tasks.Describe(at.Type(), at.Payload()))
	default:
		w.metrics.retried(at.Type(), queue)
		log.Warn("task failed, will retry", "reason", err.Error(), "max_retry", maxRetry)
	}
}

// lockedRand makes a keyspec.Rand safe for the worker's goroutines.
type lockedRand struct {
	mu sync.Mutex // guards r
	r  keyspec.Rand
}

func (l *lockedRand) Float64() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Float64()
}

// asynqLogger routes asynq's own logs into slog.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }

// Info: asynq's info lines retell the worker's own lifecycle in asynq's
// words ("Starting processing", "Waiting for all workers to finish...",
// "Exiting"), between the worker's own "worker started" and "worker
// stopped", so they go to debug. The one about a task, an unfinished task
// pushed back to its queue at shutdown, stays at info.
func (a asynqLogger) Info(args ...any) {
	msg := fmt.Sprint(args...)
	if strings.HasPrefix(msg, "Pushed task") {
		a.l.Info(msg)
		return
	}
	a.l.Debug(msg)
}
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }

// Fatal logs at error level and does not exit: a library must not end its
// host process. asynq v0.26 never calls it.
func (a asynqLogger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)) }
