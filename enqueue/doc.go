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
// An error from enqueue after the database commit leaves the cache stale
// until the entry's TTL: retry the call (it is idempotent) or log loudly.
package enqueue
