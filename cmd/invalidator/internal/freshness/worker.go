package freshness

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/sim"
	"github.com/invalidator/invalidator/tasks"
)

// slowWorker is the real worker behind a delay per task, which widens the
// gap between a write and its invalidation. It also records when each task
// was applied, for the forced races and the lag figures.
type slowWorker struct {
	next  asynq.Handler // the worker's
	delay time.Duration
	tasks *taskLog
	// markers, when not "", prefixes the marker keys that name the writes
	// of the outbox path: a relayed task merges the keys of many writes
	// and its ID is the relay's, so a write is known by its marker key.
	markers string
}

// ProcessTask implements asynq.Handler.
func (s *slowWorker) ProcessTask(ctx context.Context, t *asynq.Task) error {
	if err := sim.Sleep(ctx, s.delay); err != nil {
		return err
	}
	if err := s.next.ProcessTask(ctx, t); err != nil {
		return err
	}
	now := time.Now()
	if id, ok := asynq.GetTaskID(ctx); ok {
		s.tasks.applied(id, now)
	}
	if s.markers != "" && t.Type() == tasks.KindDeleteKeys {
		// The worker has just decoded it; a payload it accepted decodes.
		if dk, err := tasks.Unmarshal(t.Type(), t.Payload()); err == nil {
			for _, k := range dk.(tasks.DeleteKeys).Keys {
				if strings.HasPrefix(k, s.markers) {
					s.tasks.applied(k, now)
				}
			}
		}
	}
	return nil
}

// taskLog pairs each invalidation task's write with its application. It
// keeps an entry per task for the run: a few bytes per write.
type taskLog struct {
	mu    sync.Mutex
	tasks map[string]*taskTimes // by task ID; guarded by mu
	lag   *sim.Histogram        // write complete -> invalidation applied
}

type taskTimes struct {
	written, applied time.Time
	done             chan struct{} // closed when applied
}

func newTaskLog() *taskLog {
	return &taskLog{tasks: make(map[string]*taskTimes), lag: sim.NewHistogram()}
}

// entry returns the times of task id; l.mu must be held.
func (l *taskLog) entry(id string) *taskTimes {
	e, ok := l.tasks[id]
	if !ok {
		e = &taskTimes{done: make(chan struct{})}
		l.tasks[id] = e
	}
	return e
}

// written records when the write behind task id was complete.
func (l *taskLog) written(id string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(id)
	e.written = t
	if !e.applied.IsZero() {
		l.lag.Add(e.applied.Sub(t))
	}
}

// applied records when task id was applied. A redelivered task is applied
// twice; the first time counts.
func (l *taskLog) applied(id string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(id)
	if !e.applied.IsZero() {
		return
	}
	e.applied = t
	close(e.done)
	if !e.written.IsZero() {
		l.lag.Add(t.Sub(e.written))
	}
}

// wait blocks until task id was applied.
func (l *taskLog) wait(ctx context.Context, id string) error {
	l.mu.Lock()
	e := l.entry(id)
	l.mu.Unlock()
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
