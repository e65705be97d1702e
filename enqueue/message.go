package enqueue

import "github.com/invalidator/invalidator/tasks"

// Message is one invalidation task ready for the queue: a tasks.Envelope,
// its encoded payload and where and how it runs, as its freshness class and
// the overrides decided (tasks.NewEnvelope). A Builder makes Messages; a
// Client enqueues them. Every source of invalidations (direct calls, the
// transactional outbox, invalidator cdc) goes through this one type, and
// the worker's own follow-up tasks through the same Envelope, so
// validation, payloads and options never differ between them.
//
// A Builder's Messages set Kind, Payload, Queue, MaxRetry and Timeout only;
// the outbox stores those five.
type Message = tasks.Envelope
