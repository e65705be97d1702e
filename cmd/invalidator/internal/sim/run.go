package sim

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invalidator/invalidator/worker"
)

// Running is a worker or a relay running in a goroutine of this process.
type Running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
}

// Go runs run (a worker's or a relay's Run) in a goroutine until Stop is
// called or ctx ends. It runs on after ctx's cancellation only if run
// ignores it.
func Go(ctx context.Context, run func(context.Context) error) *Running {
	rctx, cancel := context.WithCancel(ctx)
	r := &Running{cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = run(rctx)
		close(r.done)
	}()
	return r
}

// Stop cancels run's context, waits for it to return, and returns its
// error. It may be called more than once.
func (r *Running) Stop() error {
	r.cancel()
	<-r.done
	return r.err
}

// Done is closed when run has returned, whether by Stop or by itself (a
// worker that could not start), so a caller can end a simulation early.
func (r *Running) Done() <-chan struct{} { return r.done }

// WorkerOption changes how StartWorker runs its worker.
type WorkerOption func(*workerOptions)

type workerOptions struct {
	wrap func(asynq.Handler) asynq.Handler
}

// WrapHandler puts wrap around the worker's task handler, for a
// simulation that delays or records each task (check-freshness's
// --worker-delay). Worker.Run takes no middleware, so the
// wrapped handler runs in a plain asynq server of Worker.ServerConfig on
// Config.Queue: it polls every PollInterval, with none of Run's wake-ups,
// heartbeats and rescues, dead-letter sweep or audits.
func WrapHandler(wrap func(asynq.Handler) asynq.Handler) WorkerOption {
	return func(o *workerOptions) { o.wrap = wrap }
}

// StartWorker starts a worker.Worker of cfg in this process: its Run,
// unless WrapHandler says otherwise. Stop shuts it down gracefully and
// waits for it.
func StartWorker(ctx context.Context, cfg worker.Config, opts ...WorkerOption) (*Running, error) {
	var o workerOptions
	for _, opt := range opts {
		opt(&o)
	}
	w, err := worker.New(cfg)
	if err != nil {
		return nil, err
	}
	if o.wrap == nil {
		return Go(ctx, w.Run), nil
	}
	srv := asynq.NewServerFromRedisClient(cfg.Queue, w.ServerConfig())
	if err := srv.Start(o.wrap(w)); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	return Go(ctx, func(ctx context.Context) error {
		<-ctx.Done()
		srv.Shutdown()
		return nil
	}), nil
}

// Sleep waits d or until ctx ends, and returns ctx's error if it ended
// first (or d is not positive and ctx has ended).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
