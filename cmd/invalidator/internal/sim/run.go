package sim

import (
	"context"

	"github.com/invalidator/invalidator/worker"
)

// Go runs run (a worker's or a relay's Run) in a goroutine until stop is
// called: stop cancels its context and waits for it to return, and
// returns its error. It runs on after ctx's cancellation only if run
// ignores it.
func Go(ctx context.Context, run func(context.Context) error) (stop func() error) {
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(rctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

// StartWorker starts a worker.Worker of cfg in this process, and returns
// a stop that shuts it down gracefully and waits for it.
func StartWorker(ctx context.Context, cfg worker.Config) (stop func() error, err error) {
	w, err := worker.New(cfg)
	if err != nil {
		return nil, err
	}
	return Go(ctx, w.Run), nil
}
