package worker

import (
	"cmp"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/audit"
	"github.com/invalidator/invalidator/internal/wake"
	"github.com/invalidator/invalidator/keyspec"
)

// Defaults for Config fields left zero.
const (
	DefaultConcurrency      = 32
	DefaultPollInterval     = 5 * time.Millisecond
	DefaultRetryCheck       = 250 * time.Millisecond
	DefaultShutdownTimeout  = 10 * time.Second
	DefaultDeleteChunk      = 500
	DefaultBatchMaxKeys     = 1000
	DefaultBatchInFlight    = 4
	DefaultScanCount        = 1000
	DefaultCheckpointTTL    = 7 * 24 * time.Hour
	defaultScanSliceReserve = 2 * time.Second

	// defaultCheckpointInterval is how often a family scan saves its cursor.
	defaultCheckpointInterval = 100 * time.Millisecond
	// checkpointSaveTimeout bounds the cursor save on the way out of a
	// cancelled scan.
	checkpointSaveTimeout = 2 * time.Second
)

// Defaults of the heartbeat and rescuer fields (heartbeat.go, rescue.go).
const (
	DefaultHeartbeatInterval = 500 * time.Millisecond
	DefaultMaxRescues        = 3
	// heartbeatTimeoutBeats is the default HeartbeatTimeout in heartbeats.
	heartbeatTimeoutBeats = 4
)

// Config configures a Worker. Zero values take the documented defaults.
type Config struct {
	// Queue is the Redis that holds the asynq queues. Required. Unless
	// PollOnly is set, Run's asynq server uses a client of its own made
	// from Queue's options (a *redis.Client or *redis.ClusterClient), with
	// the wake-up hook in it: hooks added to Queue (tracing, metrics) see
	// the worker's own commands, but not asynq's dequeues, acks and leases.
	Queue redis.UniversalClient

	// Cache is the Redis the invalidations are applied to: the target a task
	// names with an empty Target. Default: Queue.
	Cache redis.UniversalClient

	// Targets are further named caches a task may address with Target.
	// A task naming a target missing here fails and is retried, so that a
	// worker of the fleet that has it configured (or this one, after a fix)
	// can still apply it; it is never dropped.
	Targets map[string]redis.UniversalClient

	// Policy supplies the families, classes and queues. Default:
	// keyspec.Default(), which serves key deletes only.
	Policy *keyspec.Policy

	// Logger receives structured logs. Default: slog.Default().
	Logger *slog.Logger

	// Metrics receives the worker's Prometheus metrics; create it with
	// NewMetrics on the caller's registry. Default: nil, no metrics.
	Metrics *Metrics

	// Concurrency is the number of tasks processed at once. Invalidations are
	// I/O bound, so this is well above the core count. Default: 32.
	Concurrency int

	// PollInterval is how long the worker pauses before its next poll of
	// the queues after a round that found them empty and was not followed
	// by a wait for a wake-up (asynq's TaskCheckInterval): after a safety
	// poll, a wake-up whose task another worker took, and always with
	// PollOnly, where it bounds the lag at low load and each poll is one
	// Lua call per queue on the queue Redis. Default: 5ms.
	PollInterval time.Duration

	// SafetyPoll is the longest an idle worker waits for a wake-up before
	// it polls its queues anyway. Producers of this module (enqueue, the
	// outbox relay, the worker's own follow-up tasks, `dead retry`) wake an
	// idle worker when they enqueue, so their tasks start at once; tasks of
	// other producers (asynqmon's "run", plain asynq clients) wait up to
	// this long while the fleet's poll holder is idle: one idle worker of
	// the fleet polls per safety poll, the others wait 2 to 4 of them
	// (about five when the holder is busy or gone). Whole seconds, 1s to
	// wake.MaxSafetyPoll (10s). Default: 1s (see README, "Latency").
	SafetyPoll time.Duration

	// PollOnly turns wake-ups off: the worker polls its queues every
	// PollInterval, as asynq does by itself. It is the mode a worker falls
	// back to if the queue client is of a type it cannot copy. Default:
	// false.
	PollOnly bool

	// RetryCheckInterval is how often due retries are moved back to their
	// queue (asynq's DelayedTaskCheckInterval, 5s by default there). A retry
	// waits its backoff plus up to this long; asynq stores retry times in
	// whole seconds. Each check is one Lua call per queue. Default: 250ms.
	RetryCheckInterval time.Duration

	// ShutdownTimeout is how long in-flight tasks may run after a shutdown
	// signal before they are handed back to the queue. Default: 10s.
	ShutdownTimeout time.Duration

	// DeleteChunk is the number of keys in one UNLINK. Default: 500.
	DeleteChunk int

	// BatchMaxKeys caps the keys of one micro-batch: the keys of concurrently
	// running key deletes for the same cache target that go out together in
	// one pipeline of UNLINKs (of at most DeleteChunk keys each). A task with
	// more keys than this is sent as a batch of its own. Default: 1000.
	BatchMaxKeys int

	// BatchInFlight is how many micro-batches per cache target may be on the
	// wire at once; while they are, the keys of new tasks gather into the
	// next batch. A batch never waits for more keys: with a slot free, a
	// task's keys are sent at once. 1 merges the most, higher values trade
	// merging for latency under load. Default: 4.
	BatchInFlight int

	// ScanCount is the COUNT hint of each SCAN in a family delete. A larger
	// one does not make a scan faster (Redis pays per key it walks, about a
	// microsecond), but each SCAN blocks Redis longer: ~1ms at 1000, ~13ms at
	// 10000 in a 1M keyspace. Default: 1000.
	ScanCount int

	// FamilyRateLimit caps the keys per second one worker deletes through
	// family scans, to protect a busy cache. 0 means no limit. Default: 0.
	FamilyRateLimit float64

	// CheckpointTTL is how long the cursor of an unfinished family scan is
	// kept for a retry to resume from. Default: 7 days.
	CheckpointTTL time.Duration

	// DeadLetterSweep is how often one worker of the fleet (whichever holds
	// a queue's sweeper lock) copies tasks that reached asynq's archive
	// without passing the worker, archived by an operator or by asynq's
	// recoverer, into the dead-letter record that asynq does not trim. A
	// negative value turns the sweep off in this worker. Default: 2s.
	DeadLetterSweep time.Duration
	// HeartbeatInterval is how often the worker writes its heartbeat (the
	// ids of the tasks it is running) to the queue Redis, and how often the
	// worker holding the rescuer role looks for the tasks of dead workers.
	// An idle fleet costs the queue Redis one script call per worker per
	// two intervals (an idle worker skips every other beat when
	// HeartbeatTimeout is 4 intervals or more), plus one script and one
	// pipelined LRANGE per queue for the rescuer. Default: 500ms.
	HeartbeatInterval time.Duration

	// HeartbeatTimeout is how long after its last heartbeat a worker counts
	// as dead: its in-flight tasks then go back to their queue and run on
	// another worker. It bounds the stale window of a crashed worker's
	// invalidations (about HeartbeatTimeout plus one or two intervals),
	// instead of asynq's 60-120 s. Too short, and a worker stalled that long
	// (a GC pause, a slow Redis) has its tasks run twice, which is harmless
	// but logged. At least 2 × HeartbeatInterval. Default: 4 ×
	// HeartbeatInterval (2s).
	HeartbeatTimeout time.Duration

	// MaxRescues is how many times one task may be put back after its
	// worker died. A task that kills every worker that takes it is then
	// left to asynq's lease recovery, which counts a failed attempt each
	// time and ends in the dead letter. Default: 3.
	MaxRescues int

	// NoRescue keeps this worker from ever taking the rescuer role. It still
	// writes heartbeats, so other workers can rescue its tasks. Default:
	// false (one worker of the fleet at a time is the rescuer).
	NoRescue bool

	// Rand is the random source for retry jitter. Default: a fresh PCG
	// seeded from the runtime.
	Rand keyspec.Rand

	// AuditSource is the PostgreSQL database the policy's audit queries
	// run in (keyspec.Audit): with it, the fleet audits each family whose
	// policy sets audit_every, once per period across the fleet (see
	// audit_schedule.go), sampling Cache only, never Targets: the policy
	// does not say which target holds a family. Give it a read-only role.
	// Default: nil, scheduled audits off.
	AuditSource audit.Querier

	// AuditCheckInterval is how often the worker looks for due audits: a
	// run starts up to this long after its period ends. Each look is one
	// script call per scheduled family. Default: 15s.
	AuditCheckInterval time.Duration

	// AuditRate caps the cache keys per second the worker's scheduled
	// audits touch (audit.Config.Rate). Default: 0, the auditor's default
	// (5000).
	AuditRate float64

	// onWaiter, when set, is called by Run with its wake-up hook; for tests.
	onWaiter func(*wake.Waiter)

	// auditMinEvery is the shortest audit period the worker runs; tests
	// lower it below keyspec.MinAuditEvery, which the policy file enforces.
	auditMinEvery time.Duration
	// auditCheck replaces audit.PolicyCheck on AuditSource, for tests.
	auditCheck func(*keyspec.Family) (audit.Check, error)
	// onAuditRun is called after each scheduled audit this worker ran, with
	// the run's claimed start (Redis TIME, ms); for tests.
	onAuditRun func(family string, startMS int64)

	// checkpointInterval is how often a family scan saves its cursor; tests
	// shorten it to check every save. Default: defaultCheckpointInterval.
	checkpointInterval time.Duration
}

// ConfigError is the problem Validate found in one Config field. Field
// lets a caller that fills Config from its own settings (the CLI, from its
// flags) name the setting the user gave.
type ConfigError struct {
	// Field is the name of the Config field, e.g. "PollInterval".
	Field string
	// Problem says what is wrong with it, starting with its value where it
	// has one: "-5ms is negative".
	Problem string
}

func (e *ConfigError) Error() string { return "worker: Config." + e.Field + " " + e.Problem }

func configErrorf(field, format string, args ...any) error {
	return &ConfigError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Cache == nil {
		c.Cache = c.Queue
	}
	if c.Policy == nil {
		c.Policy = keyspec.Default()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.SafetyPoll == 0 {
		c.SafetyPoll = wake.DefaultSafetyPoll
	}
	if c.RetryCheckInterval == 0 {
		c.RetryCheckInterval = DefaultRetryCheck
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.DeleteChunk == 0 {
		c.DeleteChunk = DefaultDeleteChunk
	}
	if c.BatchMaxKeys == 0 {
		c.BatchMaxKeys = DefaultBatchMaxKeys
	}
	if c.BatchInFlight == 0 {
		c.BatchInFlight = DefaultBatchInFlight
	}
	if c.ScanCount == 0 {
		c.ScanCount = DefaultScanCount
	}
	if c.CheckpointTTL == 0 {
		c.CheckpointTTL = DefaultCheckpointTTL
	}
	if c.DeadLetterSweep == 0 {
		c.DeadLetterSweep = DefaultDeadLetterSweep
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = heartbeatTimeoutBeats * c.HeartbeatInterval
	}
	if c.MaxRescues == 0 {
		c.MaxRescues = DefaultMaxRescues
	}
	if c.AuditCheckInterval == 0 {
		c.AuditCheckInterval = DefaultAuditCheckInterval
	}
	if c.auditMinEvery == 0 {
		c.auditMinEvery = keyspec.MinAuditEvery
	}
	if c.checkpointInterval == 0 {
		c.checkpointInterval = defaultCheckpointInterval
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return c
}

// Validate reports the first configuration problem, naming the field, as a
// *ConfigError. Zero values are valid and mean the default (withDefaults),
// so Validate and withDefaults are the only places that decide what a
// setting may be. Settings are checked before Queue, so a caller may
// validate them before it has a connection.
func (c Config) Validate() error {
	switch {
	case c.Concurrency < 0:
		return configErrorf("Concurrency", "%d is negative", c.Concurrency)
	case c.PollInterval < 0:
		return configErrorf("PollInterval", "%s is negative", c.PollInterval)
	case c.SafetyPoll < 0 || c.SafetyPoll > wake.MaxSafetyPoll || (c.SafetyPoll > 0 && c.SafetyPoll < time.Second):
		return configErrorf("SafetyPoll", "%s is outside 1s..%s, 0 for the default %s (a wake-up wait counts whole seconds, and a woken task keeps the lease asynq set before the wait, which is 30 s)",
			c.SafetyPoll, wake.MaxSafetyPoll, wake.DefaultSafetyPoll)
	case c.RetryCheckInterval < 0:
		return configErrorf("RetryCheckInterval", "%s is negative", c.RetryCheckInterval)
	case c.ShutdownTimeout < 0:
		return configErrorf("ShutdownTimeout", "%s is negative", c.ShutdownTimeout)
	case c.DeleteChunk < 0:
		return configErrorf("DeleteChunk", "%d is negative", c.DeleteChunk)
	case c.BatchMaxKeys < 0:
		return configErrorf("BatchMaxKeys", "%d is negative", c.BatchMaxKeys)
	case c.BatchInFlight < 0:
		return configErrorf("BatchInFlight", "%d is negative", c.BatchInFlight)
	case c.ScanCount < 0:
		return configErrorf("ScanCount", "%d is negative", c.ScanCount)
	case !(c.FamilyRateLimit >= 0) || math.IsInf(c.FamilyRateLimit, 1):
		return configErrorf("FamilyRateLimit", "%g is not a number of keys/s, 0 or more (0: no limit)", c.FamilyRateLimit)
	case c.CheckpointTTL < 0:
		return configErrorf("CheckpointTTL", "%s is negative", c.CheckpointTTL)
	case c.HeartbeatInterval < 0:
		return configErrorf("HeartbeatInterval", "%s is negative", c.HeartbeatInterval)
	case c.HeartbeatTimeout < 0:
		return configErrorf("HeartbeatTimeout", "%s is negative", c.HeartbeatTimeout)
	case c.AuditCheckInterval < 0:
		return configErrorf("AuditCheckInterval", "%s is negative", c.AuditCheckInterval)
	case !(c.AuditRate >= 0) || math.IsInf(c.AuditRate, 1):
		return configErrorf("AuditRate", "%g is not a number of keys/s, 0 or more (0: the auditor's default)", c.AuditRate)
	case c.MaxRescues < 0:
		return configErrorf("MaxRescues", "%d is negative", c.MaxRescues)
	}
	interval := cmp.Or(c.HeartbeatInterval, DefaultHeartbeatInterval)
	if timeout := cmp.Or(c.HeartbeatTimeout, heartbeatTimeoutBeats*interval); timeout < 2*interval {
		return configErrorf("HeartbeatTimeout", "%s is below 2 × HeartbeatInterval (%s): "+
			"live workers would be taken for dead between two heartbeats", timeout, interval)
	}
	for name, t := range c.Targets {
		if name == "" {
			return configErrorf("Targets", "has an empty name; the unnamed target is Config.Cache")
		}
		if t == nil {
			return configErrorf(fmt.Sprintf("Targets[%q]", name), "is nil")
		}
	}
	if c.Queue == nil {
		return configErrorf("Queue", "is nil (pass the redis.UniversalClient of the queue Redis)")
	}
	return nil
}
