package enqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/internal/slot"
	"github.com/invalidator/invalidator/keyspec"
)

// inlineChunk bounds the keys of one inline UNLINK, as the worker's batcher
// bounds its own: a 10k-key call must not become one huge command.
const inlineChunk = 512

// DefaultInlineTimeout is Config.InlineTimeout's default.
const DefaultInlineTimeout = 100 * time.Millisecond

// InlineMetrics counts the inline deletes of a Client (Config.InlineDelete).
// Make one with NewInlineMetrics and pass it in Config.InlineMetrics.
type InlineMetrics struct {
	keys     prometheus.Counter
	failures prometheus.Counter
}

// NewInlineMetrics registers the inline delete counters with reg:
// invalidator_enqueue_inline_deleted_keys_total (keys whose inline UNLINK
// succeeded, present or not) and
// invalidator_enqueue_inline_delete_failures_total (calls whose inline
// UNLINK failed; their tasks were enqueued all the same).
func NewInlineMetrics(reg prometheus.Registerer) (*InlineMetrics, error) {
	if reg == nil {
		return nil, errors.New("enqueue: inline metrics: nil prometheus.Registerer (pass prometheus.NewRegistry(), or leave Config.InlineMetrics nil)")
	}
	m := &InlineMetrics{
		keys: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "invalidator", Subsystem: "enqueue", Name: "inline_deleted_keys_total",
			Help: "Keys deleted inline by producers (UNLINK acknowledged), before their task was enqueued.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "invalidator", Subsystem: "enqueue", Name: "inline_delete_failures_total",
			Help: "Producer calls whose inline UNLINK failed; their tasks were enqueued all the same.",
		}),
	}
	for _, c := range []prometheus.Collector{m.keys, m.failures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("enqueue: inline metrics: %w", err)
		}
	}
	return m, nil
}

// inline applies a call's key deletes to the cache at once, before its task
// is enqueued. It is best effort by design: the task is the guarantee, so a
// failure is logged at debug and counted, never returned.
type inline struct {
	cache   redis.UniversalClient
	cluster bool
	timeout time.Duration
	log     *slog.Logger
	metrics *InlineMetrics // nil: none
}

func newInline(cfg Config) *inline {
	if cfg.InlineDelete == nil {
		return nil
	}
	in := &inline{
		cache:   cfg.InlineDelete,
		timeout: cfg.InlineTimeout,
		log:     cfg.Logger,
		metrics: cfg.InlineMetrics,
	}
	if in.timeout == 0 {
		in.timeout = DefaultInlineTimeout
	}
	if in.log == nil {
		in.log = slog.New(slog.DiscardHandler)
	}
	_, in.cluster = cfg.InlineDelete.(*redis.ClusterClient)
	return in
}

// unlink deletes keys with one UNLINK per hash slot (per chunk of
// inlineChunk keys), pipelined. ctx's values and deadline carry over, but
// not beyond the inline timeout, so a hung cache delays the enqueue that
// follows by at most that; the caller's cancellation still applies.
func (in *inline) unlink(ctx context.Context, keys []string) {
	if in == nil || len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, in.timeout)
	defer cancel()
	pipe := in.cache.Pipeline()
	for _, group := range slotGroups(keys, in.cluster) {
		for lo := 0; lo < len(group); lo += inlineChunk {
			pipe.Unlink(ctx, group[lo:min(lo+inlineChunk, len(group))]...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// Debug, not warn: with the cache down every call fails, and the
		// task that follows does the delete; the counter is the alarm.
		in.log.DebugContext(ctx, "inline delete failed; the queued task will delete the keys", "keys", len(keys), "err", err)
		if in.metrics != nil {
			in.metrics.failures.Inc()
		}
		return
	}
	if in.metrics != nil {
		in.metrics.keys.Add(float64(len(keys)))
	}
}

// slotGroups groups keys by hash slot on a cluster, where no multi-key
// command may cross slots; elsewhere all keys form one group.
func slotGroups(keys []string, cluster bool) [][]string {
	if !cluster {
		return [][]string{keys}
	}
	return slot.Group(keys, func(k string) string { return k })
}

// inlineKeys returns the keys an event's actions delete that the worker
// would delete too: key deletes of families in enforce mode. Pattern
// deletes (a SCAN) and version bumps (a Lua script on the version key) stay
// with the worker; shadow and off families are never touched.
func inlineKeys(actions []keyspec.Action) []string {
	var keys []string
	for _, a := range actions {
		if a.Kind == keyspec.ActionDelete && a.Family.Mode.Enforced() {
			keys = append(keys, a.Key)
		}
	}
	return keys
}
