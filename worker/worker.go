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
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// Worker applies invalidation tasks from asynq queues to the cache.
// It is an asynq.Handler, so it can also be mounted on a caller's own
// asynq.Server; Run starts a server of its own.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	policy  *keyspec.Policy
	queues  map[string]int
	classOf map[string]*keyspec.Class // queue -> class, for retry backoff
	rand    *lockedRand
	limiter *rate.Limiter // nil: family scans unthrottled
	aq      *asynq.Client // enqueues continuations of long family scans
	now     func() time.Time

	// batchers merge key deletes per cache target ("" is Config.Cache).
	// They hold no goroutine while idle, so the Worker needs no Close.
	batchers map[string]*batcher
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
		policy:  cfg.Policy,
		queues:  make(map[string]int),
		classOf: make(map[string]*keyspec.Class),
		rand:    &lockedRand{r: cfg.Rand},
		aq:      asynq.NewClientFromRedisClient(cfg.Queue),
		now:     time.Now,
	}
	for _, q := range cfg.Policy.Queues() {
		w.queues[q] = 1
	}
	w.batchers = map[string]*batcher{"": newBatcher(cfg.Cache, cfg.BatchMaxKeys, cfg.DeleteChunk, cfg.BatchInFlight)}
	for name, c := range cfg.Targets {
		w.batchers[name] = newBatcher(c, cfg.BatchMaxKeys, cfg.DeleteChunk, cfg.BatchInFlight)
	}
	// Classes sharing a queue: the first by name sets its backoff.
	names := slices.Sorted(maps.Keys(cfg.Policy.Classes))
	for _, name := range names {
		c := cfg.Policy.Classes[name]
		if _, ok := w.classOf[c.Queue]; !ok {
			w.classOf[c.Queue] = c
		}
	}
	if cfg.FamilyRateLimit > 0 {
		burst := max(int(cfg.FamilyRateLimit), cfg.DeleteChunk)
		w.limiter = rate.NewLimiter(rate.Limit(cfg.FamilyRateLimit), burst)
	}
	return w, nil
}

// Queues returns the asynq queues this worker serves, with their weights.
func (w *Worker) Queues() map[string]int {
	out := make(map[string]int, len(w.queues))
	for q, p := range w.queues {
		out[q] = p
	}
	return out
}

// ServerConfig returns the asynq.Config that Run uses: the worker's queues,
// concurrency, polling interval, retry schedule and error logging. Callers
// that run their own asynq.Server start from it.
func (w *Worker) ServerConfig() asynq.Config {
	return asynq.Config{
		Concurrency:              w.cfg.Concurrency,
		Queues:                   w.Queues(),
		TaskCheckInterval:        w.cfg.PollInterval,
		DelayedTaskCheckInterval: w.cfg.RetryCheckInterval,
		ShutdownTimeout:          w.cfg.ShutdownTimeout,
		RetryDelayFunc:           w.retryDelay,
		ErrorHandler:             asynq.ErrorHandlerFunc(w.handleError),
		Logger:                   asynqLogger{l: w.log.With("component", "asynq")},
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
	srv := asynq.NewServerFromRedisClient(w.cfg.Queue, w.ServerConfig())
	if err := srv.Start(w); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	queues := make([]string, 0, len(w.queues))
	for q := range w.queues {
		queues = append(queues, q)
	}
	w.log.Info("worker started", "queues", queues, "concurrency", w.cfg.Concurrency,
		"poll_interval", w.cfg.PollInterval.String())
	<-ctx.Done()
	w.log.Info("worker shutting down", "shutdown_timeout", w.cfg.ShutdownTimeout.String())
	srv.Shutdown()
	w.log.Info("worker stopped")
	return nil
}

// checkTopology refuses a plain client connected to one node of a Redis
// Cluster: a family scan through it would see only that node's keys and
// report success with the rest of the family still cached.
func (w *Worker) checkTopology(ctx context.Context) error {
	clients := map[string]redis.UniversalClient{"queue Redis": w.cfg.Queue, "cache Redis": w.cfg.Cache}
	for name, c := range w.cfg.Targets {
		clients[fmt.Sprintf("cache target %q", name)] = c
	}
	for role, c := range clients {
		if _, ok := c.(*redis.ClusterClient); ok {
			continue
		}
		info, err := c.Info(ctx, "cluster").Result()
		if err != nil {
			return fmt.Errorf("check %s: %w", role, err)
		}
		if strings.Contains(info, "cluster_enabled:1") {
			return fmt.Errorf("%s is a node of a Redis Cluster but was opened as a single server: "+
				"use a cluster client (URL redis+cluster://host:port,...) so that every master is scanned", role)
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
	log := w.log.With("task_id", id, "kind", at.Type(), "retry", retried, "queue", queue)

	err := w.apply(ctx, at, id, log)
	if err == nil || IsPoison(err) {
		return err
	}
	class, ok := w.classOf[queue]
	if !ok {
		class = w.defaultClass()
	}
	return &retryError{cause: err, delay: backoff(class, retried, w.rand)}
}

func (w *Worker) apply(ctx context.Context, at *asynq.Task, id string, log *slog.Logger) error {
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
	start := time.Now()
	switch t := t.(type) {
	case tasks.DeleteKeys:
		err = w.applyDeleteKeys(ctx, t, log)
		logApplied(log, err, start, t.EnqueuedAt)
	case tasks.DeleteFamily:
		err = w.applyDeleteFamily(ctx, t, at, id, log)
		logApplied(log, err, start, t.EnqueuedAt)
	case tasks.BumpVersion:
		err = w.applyBumpVersion(ctx, t, log)
		logApplied(log, err, start, t.EnqueuedAt)
	default:
		err = poison(fmt.Errorf("task kind %q decodes to %T, which this worker cannot apply; upgrade the worker", at.Type(), t))
	}
	return err
}

func logApplied(log *slog.Logger, err error, start, enqueuedAt time.Time) {
	if err != nil {
		return
	}
	attrs := []any{"took", time.Since(start).String()}
	if !enqueuedAt.IsZero() {
		attrs = append(attrs, "lag_ms", float64(time.Since(enqueuedAt).Microseconds())/1000)
	}
	log.Debug("applied", attrs...)
}

// target returns the cache a task addresses.
func (w *Worker) target(name string) (redis.UniversalClient, error) {
	if name == "" {
		return w.cfg.Cache, nil
	}
	if c, ok := w.cfg.Targets[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("unknown cache target %q: configure it on this worker, or enqueue with an empty target for the default cache", name)
}

func (w *Worker) defaultClass() *keyspec.Class {
	if c, err := w.policy.Class(w.policy.DefaultClass); err == nil {
		return c
	}
	return &keyspec.Class{BackoffBase: 250 * time.Millisecond, BackoffMax: time.Minute}
}

// retryDelay is asynq's RetryDelayFunc.
func (w *Worker) retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var re *retryError
	if errors.As(err, &re) {
		return re.delay
	}
	// Lease expiry and timeouts come from asynq itself, not the handler.
	return backoff(w.defaultClass(), n, w.rand)
}

// handleError is asynq's ErrorHandler: every failure is logged, and the
// last one before the dead letter at error level with its reason.
func (w *Worker) handleError(ctx context.Context, at *asynq.Task, err error) {
	id, _ := asynq.GetTaskID(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	log := w.log.With("task_id", id, "kind", at.Type(), "retry", retried, "queue", queue)
	switch {
	case IsPoison(err):
		log.Error("task moved to dead letter", "reason", err.Error(), "summary", tasks.Describe(at.Type(), at.Payload()))
	case retried >= maxRetry:
		log.Error("task moved to dead letter: retries exhausted", "reason", err.Error(), "max_retry", maxRetry,
			"summary", tasks.Describe(at.Type(), at.Payload()))
	default:
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
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }

// Fatal logs at error level and does not exit: a library must not end its
// host process. asynq v0.26 never calls it.
func (a asynqLogger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)) }
