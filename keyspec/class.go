package keyspec

import "time"

// Defaults of a freshness class, applied to every field a policy file leaves
// out.
const (
	// DefaultQueuePrefix is prefixed to a class name to name its asynq queue.
	DefaultQueuePrefix = "invalidator-"
	// DefaultMaxRetry is how often a task is retried before the dead letter.
	DefaultMaxRetry = 10
	// DefaultTimeout bounds one attempt of one task.
	DefaultTimeout = 30 * time.Second
	// DefaultBackoffBase is the delay before the first retry.
	DefaultBackoffBase = 250 * time.Millisecond
	// DefaultBackoffMax caps the retry delay.
	DefaultBackoffMax = time.Minute
	// DefaultClassName is the only class of the Default() policy.
	DefaultClassName = "default"
	// DefaultWeight is a class queue's polling weight.
	DefaultWeight = 1
)

// Class is a freshness class: how long entries of its families may live in
// the cache, and how hard the worker tries to invalidate them. Families that
// must never be stale for long (prices, permissions) belong to a class with a
// short TTL and many retries on a queue of their own, so a backlog of bulk
// invalidations cannot delay them.
type Class struct {
	// Name of the class, [a-z0-9_-]+.
	Name string
	// TTL is the default TTL of cache entries of families in this class; it
	// bounds staleness if every invalidation were lost. 0 means no expiry.
	TTL time.Duration
	// Jitter is the fraction in [0, 0.5] by which TTLs are spread, so entries
	// written together do not expire together. Default 0.
	Jitter float64
	// Queue is the asynq queue of the class's tasks. Default
	// "invalidator-" + Name.
	Queue string
	// MaxRetry is how often a task is retried before it is archived to the
	// dead letter. Default 10.
	MaxRetry int
	// Timeout bounds one attempt of one task, in whole seconds (asynq keeps
	// timeouts in seconds and truncates; the policy refuses others). Default
	// 30s.
	Timeout time.Duration
	// BackoffBase is the delay before the first retry; later retries double
	// it. Default 250ms.
	BackoffBase time.Duration
	// BackoffMax caps the retry delay. Default 1m.
	BackoffMax time.Duration
	// Weight is the queue's share of a worker's attention: asynq picks the
	// next queue to poll with probability weight/sum of weights, so a
	// critical class with weight 6 next to a bulk one with 1 gets six
	// polls in seven. Classes sharing a queue share its weight (the
	// highest wins). Default 1.
	Weight int
	// SecondDelete, when > 0, makes the worker delete a task's keys again
	// at least this long after it applied them (an asynq scheduled task;
	// asynq schedules in whole seconds, so up to a second more). It narrows
	// the window in which a reader that does not use cacheaside leases can
	// put back a value it loaded before the write: a mitigation for such
	// readers, not a guarantee. Pattern deletes and version bumps get no
	// second pass. Default 0 (off).
	SecondDelete time.Duration
	// Shards splits the class's queue into this many asynq queues, each on
	// its own hash slot, so that on a Redis Cluster the class's tasks spread
	// over the masters instead of one (see ShardQueues for the names and
	// QueueFor for which task goes where). Workers serve every shard, the
	// class's weight split evenly across them. 1 to MaxShards; default 1
	// (0 counts as 1).
	Shards int
	// shards caches the shard queue names (see Class.shardNames).
	shards shardCache
	// AuditEvery is how often the worker fleet audits each family of the
	// class that has an audit section and sets no audit_every of its own.
	// At least MinAuditEvery; 0 (the default) means no scheduled audit.
	AuditEvery time.Duration
	// AuditSample is how many keys such a scheduled audit compares at
	// most. 0 (the default) means the auditor's default (100).
	AuditSample int
}

// NewClass returns a class with every default applied: no TTL, no jitter,
// queue "invalidator-" + name, 10 retries, 30s timeout, backoff 250ms to 1m,
// weight 1, no second delete.
func NewClass(name string) *Class {
	return &Class{
		Name:        name,
		Queue:       DefaultQueuePrefix + name,
		MaxRetry:    DefaultMaxRetry,
		Timeout:     DefaultTimeout,
		BackoffBase: DefaultBackoffBase,
		BackoffMax:  DefaultBackoffMax,
		Weight:      DefaultWeight,
		Shards:      1,
	}
}
