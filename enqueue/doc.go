// Package enqueue is what application code calls right after a write
// commits: it turns "these keys are stale" into typed invalidation tasks on
// the asynq queues that invalidator workers serve.
//
//	policy, err := keyspec.Load("policy.yaml")
//	...
//	inv, err := enqueue.New(rdb, enqueue.Config{Policy: policy})
//	...
//	// after the UPDATE commits:
//	ids, err := inv.DeleteKeys(ctx, "user:{42}:profile", "user:{42}:settings")
//	id, err := inv.DeleteFamily(ctx, "product_price", map[string]string{"sku": "42"})
//	id, err = inv.BumpVersion(ctx, "user_feed", map[string]string{"user_id": "42"})
//
// Better still, the write site names what changed and the policy's events
// section decides which keys die, so no write site must know every cache
// that depends on its data:
//
//	id, err = inv.Publish(ctx, "product.updated", map[string]string{"id": "42"})
//
// Queue, retry budget and timeout come from the family's freshness class
// (raw key deletes use the policy's default class); With overrides them.
// Every task carries its enqueue time, so workers can measure lag.
//
// Tasks are never deduplicated with asynq's Unique or TaskID options: a
// write that commits while a matching task is already running would have its
// invalidation refused as a duplicate after the running task had deleted the
// key, and a reader could then cache the old value again. A duplicate
// invalidation costs one cache miss; a dropped one serves stale data.
//
// A worker process runs about 17k tasks/s, so many request handlers that
// each invalidate one key must not make one task each. A Client merges
// concurrent DeleteKeys calls into shared tasks, unless Config.NoCoalesce is
// set; Config.Coalesce tunes it:
//
//	inv, err := enqueue.New(rdb, enqueue.Config{
//		Policy:   policy,
//		Coalesce: &enqueue.CoalesceConfig{Window: 2 * time.Millisecond}, // default: DefaultCoalesceWindow
//	})
//
// Coalescing is group commit, per set of With overrides: a call is enqueued
// at once when no task of its overrides is being enqueued, so a lone caller
// waits no window. Calls that arrive while one is being enqueued gather in a
// batch, which becomes one task as soon as that enqueue finishes; under load
// a round trip's worth of calls share each task. The window (at most
// MaxCoalesceWindow) bounds the wait: a batch goes out when its window,
// started by its first call, ends, even if the enqueue ahead of it is stuck,
// and at once when it holds MaxKeys keys. Each caller waits at most the
// window plus the enqueue round trip and gets the shared task's ID and
// error. The task's EnqueuedAt is the earliest caller's time, so lag is
// never under-reported. Duplicate keys within a batch are kept, as SplitKeys
// keeps them: a second UNLINK of a key costs Redis one lookup. A lone call
// is enqueued on its own goroutine with its own ctx, as without coalescing.
// A caller in a shared batch whose ctx ends first returns at once with an
// error wrapping ctx.Err(), but its keys stay in the batch and are enqueued
// with it (a harmless extra delete). Close enqueues the pending batches at once and waits for them;
// later DeleteKeys calls fail with ErrClosed. Batches never use asynq's
// Unique or TaskID either: calls are merged only while they wait together,
// never with a task already enqueued.
//
// A Builder (Client.Builder, or NewBuilder without any connection) does the
// checking and building alone: it turns the same calls into Messages (each
// a tasks.Envelope from tasks.NewEnvelope: the encoded task, its queue,
// retries and timeout) and refuses what a Client refuses, with the same
// errors. Client.Enqueue puts a Message on its queue. Every source of
// invalidations shares this one path, so validation, payloads and options
// never differ between them; package outbox stores Messages in the caller's
// SQL transaction and its relay enqueues them.
//
// Config.InlineDelete, the cache Redis, makes DeleteKeys and Publish also
// UNLINK their keys there at once, before enqueueing: lag of one round trip
// whatever the fleet does. The task is enqueued all the same and stays the
// guarantee; an inline failure is counted and logged, never returned.
//
// An error from enqueue after the database commit leaves the cache stale
// until the entry's TTL: retry the call (it is idempotent) or log loudly.
package enqueue
