package tasks

import (
	"time"

	"github.com/hibiken/asynq"

	"github.com/invalidator/invalidator/keyspec"
)

// Envelope is one task ready for the queue: its kind and encoded payload,
// and where and how it runs. Every task the module puts on a queue goes
// through an Envelope: enqueue.Client's (and so the outbox relay's and
// invalidator cdc's, whose enqueue.Message is an Envelope), the worker's
// second deletes, event fan-out and scan continuations, and `invalidator
// dead retry`. So the asynq options of a task are decided in one place,
// Asynq, and NewEnvelope alone turns a class and overrides into them.
type Envelope struct {
	// Kind is the task kind (Kind*), the asynq task type.
	Kind string
	// Payload is the task in this package's codec: binary-safe, validated.
	Payload []byte
	// Queue is the asynq queue.
	Queue string
	// MaxRetry is how often a failed task is retried before the dead letter.
	MaxRetry int
	// Timeout bounds one attempt; 0 leaves asynq's default.
	Timeout time.Duration
	// Headers are the task's asynq headers (Header*); nil for none, as a
	// producer's tasks have.
	Headers map[string]string
	// ProcessAt, when set, holds the task back until then (an asynq
	// scheduled task, in whole seconds); zero runs it at once.
	ProcessAt time.Time
	// ID, when set, is the asynq task ID: only for putting a dead-lettered
	// task back under its own ID, which its checkpoint and the operator
	// know it by. Never set it to coalesce invalidations: asynq refuses an
	// ID that is still queued, so a write committing while a matching task
	// waits would be dropped. Empty lets asynq pick a fresh ID.
	ID string
}

// Asynq returns the asynq task and options of e: the one place where an
// Envelope's fields become asynq's.
func (e Envelope) Asynq() (*asynq.Task, []asynq.Option) {
	opts := make([]asynq.Option, 0, 5)
	opts = append(opts, asynq.Queue(e.Queue), asynq.MaxRetry(e.MaxRetry))
	if e.Timeout > 0 {
		opts = append(opts, asynq.Timeout(e.Timeout))
	}
	if !e.ProcessAt.IsZero() {
		opts = append(opts, asynq.ProcessAt(e.ProcessAt))
	}
	if e.ID != "" {
		opts = append(opts, asynq.TaskID(e.ID))
	}
	return asynq.NewTaskWithHeaders(e.Kind, e.Payload, e.Headers), opts
}

// Overrides replace a class's defaults for the tasks of one producer (see
// enqueue.With). The zero value keeps them all.
type Overrides struct {
	// Queue, when not empty, replaces the class's queue. The Queue of a
	// sharded class resolves to that class's shard for the task; a shard
	// queue named outright is kept.
	Queue string
	// MaxRetry, when not nil, replaces the class's retry budget.
	MaxRetry *int
	// Timeout, when > 0, replaces the class's.
	Timeout time.Duration
}

// NewEnvelope encodes t (Marshal, which validates it) and addresses it as
// policy p routes a task of class: the class's queue, or o.Queue, resolved
// to the shard that t's ShardKey picks when it is the Queue of a sharded
// class of p (keyspec.Class.QueueFor), so producers and workers agree on
// it; the class's retries and timeout unless o overrides them; and headers.
func NewEnvelope(p *keyspec.Policy, class *keyspec.Class, t Task, o Overrides, headers map[string]string) (Envelope, error) {
	payload, err := Marshal(t)
	if err != nil {
		return Envelope{}, err
	}
	e := Envelope{Kind: t.Kind(), Payload: payload, Queue: class.Queue, MaxRetry: class.MaxRetry, Timeout: class.Timeout, Headers: headers}
	if o.Queue != "" {
		e.Queue = o.Queue
	}
	if o.MaxRetry != nil {
		e.MaxRetry = *o.MaxRetry
	}
	if o.Timeout > 0 {
		e.Timeout = o.Timeout
	}
	// The shard key is computed only for a sharded queue: for bumps and
	// events it costs allocations.
	if c := p.ShardedClass(e.Queue); c != nil {
		e.Queue = c.QueueFor(ShardKey(t))
	}
	return e, nil
}

// ScanID returns the ID of the family delete scan that a task with this ID
// and headers belongs to: the scan its HeaderScan names, for a
// continuation, else its own ID. The scan's checkpoint is named by it.
func ScanID(taskID string, headers map[string]string) string {
	if h := headers[HeaderScan]; h != "" {
		return h
	}
	return taskID
}
