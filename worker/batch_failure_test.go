package worker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// errWholePipeline is what wholeFailure makes a pipeline return.
var errWholePipeline = errors.New("injected pipeline failure without command errors (test)")

// wholeFailure fails pipelines as a whole while on: Exec returns an error
// but no command carries one, the one case where the batcher has nothing to
// pin the failure on. send says whether the failed pipeline still reaches
// Redis (its reply was lost) or not (the write never happened). The first
// pipeline can be held until released, so that later submits queue up
// behind it and go out together as one batch.
type wholeFailure struct {
	on, send atomic.Bool
	hold     chan struct{} // if set, the first pipeline waits for it to close
	held     chan struct{} // closed once the first pipeline waits
	seen     atomic.Int64  // pipelines seen
}

func (h *wholeFailure) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *wholeFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *wholeFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.seen.Add(1) == 1 && h.hold != nil {
			close(h.held)
			<-h.hold
		}
		if !h.on.Load() {
			return next(ctx, cmds)
		}
		if h.send.Load() {
			_ = next(ctx, cmds)
			for _, c := range cmds {
				c.SetErr(nil)
			}
		}
		return errWholePipeline
	}
}

// A pipeline that fails without a command error fails every task of the
// batch: none may be told its keys are gone. Several tasks are merged into
// one batch, behind a first one that holds the only in-flight slot.
func TestBatcherWholePipelineFailureFailsEveryTask(t *testing.T) {
	t.Parallel()
	for _, send := range []bool{false, true} {
		t.Run(fmt.Sprintf("executed=%v", send), func(t *testing.T) {
			t.Parallel()
			rdb := redistest.NewDB(t).Client
			hook := &wholeFailure{hold: make(chan struct{}), held: make(chan struct{})}
			hook.on.Store(true)
			hook.send.Store(send)
			const tasks = 5
			keys := fill(t, rdb, tasks*3, "whole:%d")
			rdb.AddHook(hook)
			b := newBatcher(rdb, 100, 2, 1) // chunks of 2: each batch is several UNLINKs

			errs := make(chan error, tasks)
			submit := func(i int) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				errs <- b.unlink(ctx, keys[i*3:i*3+3])
			}
			go submit(0)
			<-hook.held
			for i := 1; i < tasks; i++ {
				go submit(i)
			}
			require.Eventually(t, func() bool { return b.waiting() == tasks-1 }, 10*time.Second, time.Millisecond)
			close(hook.hold)
			for range tasks {
				err := <-errs
				require.ErrorIs(t, err, errBatchFailed, "a task was told its keys are gone after a pipeline failure")
				require.ErrorIs(t, err, errWholePipeline)
			}
			require.EqualValues(t, 2, hook.seen.Load(), "the four waiting tasks were meant to share one batch")
			hook.on.Store(false)
			if !send {
				require.Equal(t, len(keys), CountExisting(t, rdb, keys...))
			}

			// The retries succeed once the pipeline does.
			for i := range tasks {
				require.NoError(t, b.unlink(context.Background(), keys[i*3:i*3+3]))
			}
			require.Zero(t, CountExisting(t, rdb, keys...))
			require.Eventually(t, b.idle, 10*time.Second, time.Millisecond)
		})
	}
}
