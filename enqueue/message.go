package enqueue

import (
	"time"

	"github.com/hibiken/asynq"
)

// Message is one invalidation task ready for the queue: its encoded payload
// and where and how it runs, as its freshness class and the overrides
// decided. A Builder makes Messages; a Client enqueues them. Every source of
// invalidations (direct calls, the transactional outbox) goes through this
// one type, so validation, payloads and options never differ between them.
type Message struct {
	// Kind is the task kind (tasks.Kind*), the asynq task type.
	Kind string
	// Payload is the task in the tasks codec: binary-safe, validated.
	Payload []byte
	// Queue is the asynq queue: the class's, or the Queue override.
	Queue string
	// MaxRetry is how often a failed task is retried before the dead letter.
	MaxRetry int
	// Timeout bounds one attempt; 0 leaves asynq's default.
	Timeout time.Duration
}

// asynqTask returns the asynq task and options of m.
func (m Message) asynqTask() (*asynq.Task, []asynq.Option) {
	opts := []asynq.Option{asynq.Queue(m.Queue), asynq.MaxRetry(m.MaxRetry)}
	if m.Timeout > 0 {
		opts = append(opts, asynq.Timeout(m.Timeout))
	}
	return asynq.NewTask(m.Kind, m.Payload), opts
}
