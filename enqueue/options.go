package enqueue

import (
	"time"

	"github.com/invalidator/invalidator/tasks"
)

// Option overrides a class default for the tasks of one Client (see With).
type Option func(*tasks.Overrides)

// Queue sends tasks to queue instead of their class's queue, e.g. a raw key
// delete to the critical class's queue. It must be the queue of a class of
// the policy, since those are the queues workers serve; enqueueing refuses
// any other.
func Queue(queue string) Option { return func(o *tasks.Overrides) { o.Queue = queue } }

// MaxRetry sets how often a failed task is retried before the dead letter:
// 0 or more (0 archives a failed task at once). Enqueueing refuses a
// negative n with ErrInvalidOption.
func MaxRetry(n int) Option { return func(o *tasks.Overrides) { o.MaxRetry = &n } }

// Timeout sets how long one attempt of a task may run: a whole number of
// seconds, since asynq keeps timeouts in seconds; 0 keeps the class's.
// Enqueueing refuses a negative or fractional d with ErrInvalidOption.
func Timeout(d time.Duration) Option { return func(o *tasks.Overrides) { o.Timeout = d } }
