package worker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/audit"
	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
)

// testAuditEvery is the audit period of the scheduling tests, below
// keyspec.MinAuditEvery through Config.auditMinEvery.
const testAuditEvery = 150 * time.Millisecond

func TestClaimAudit_OneWinnerPerPeriod(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := t.Context()

	start, won, err := claimAudit(ctx, rdb, "product", time.Hour)
	require.NoError(t, err)
	require.True(t, won)
	for range 5 { // any other worker, in the same period
		_, won, err = claimAudit(ctx, rdb, "product", time.Hour)
		require.NoError(t, err)
		require.False(t, won)
	}
	require.Equal(t, fmt.Sprint(start), rdb.Get(ctx, fleetAuditKey("product")).Val())
	require.Positive(t, rdb.PTTL(ctx, fleetAuditKey("product")).Val(), "a family no longer audited leaves no key behind")
	_, won, err = claimAudit(ctx, rdb, "other", time.Hour)
	require.NoError(t, err)
	require.True(t, won, "each family has its own period")

	// A period that has passed (the last run's start moved back by one).
	require.NoError(t, rdb.Set(ctx, fleetAuditKey("product"), start-time.Hour.Milliseconds(), 0).Err())
	_, won, err = claimAudit(ctx, rdb, "product", time.Hour)
	require.NoError(t, err)
	require.True(t, won)
}

// auditRun is one scheduled audit a worker ran.
type auditRun struct {
	worker  int
	family  string
	startMS int64
}

type auditBundle struct {
	queue   redis.UniversalClient
	policy  *keyspec.Policy
	source  audit.Source
	runs    chan auditRun
	metrics []*Metrics
	logs    []*bytes.Buffer
	stops   []func()
	targets map[string]redis.UniversalClient // the workers' named cache targets
}

// setupAudits has one family, product, audited every testAuditEvery, with
// 3 fresh and 2 stale entries planted in the cache.
func setupAudits(t *testing.T) *auditBundle {
	t.Helper()
	p, err := keyspec.Parse("p.yaml", []byte(`version: 1
classes:
  standard: {ttl: 1m, audit_every: 1h}
families:
  product:
    template: "product:{id}"
    params: {id: {match: '[0-9]+'}}
    class: standard
    audit: {query: "SELECT v FROM t WHERE id = @id", compare: bytes}
`))
	require.NoError(t, err)
	p.Families["product"].Audit.Every = testAuditEvery
	rdb := redistest.Client(t)
	rows := map[string]string{}
	for i := range 5 {
		id := fmt.Sprint(i)
		rows[id] = "v" + id
		cached := rows[id]
		if i >= 3 {
			cached = "stale" + id
		}
		require.NoError(t, rdb.Set(t.Context(), "product:"+id, cacheaside.EncodeValue([]byte(cached)), 0).Err())
	}
	src := audit.SourceFunc(func(_ context.Context, params map[string]string) ([]byte, bool, error) {
		v, ok := rows[params["id"]]
		return []byte(v), ok, nil
	})
	return &auditBundle{queue: rdb, policy: p, source: src, runs: make(chan auditRun, 1000)}
}

// start runs a worker; without a source it has no audit source.
func (b *auditBundle) start(t *testing.T, withSource bool) int {
	t.Helper()
	i := len(b.metrics)
	m, err := NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	var logs bytes.Buffer // read only after the worker stopped
	cfg := Config{
		Queue: b.queue, Policy: b.policy, Metrics: m, DeadLetterSweep: -1, Targets: b.targets,
		Logger:             slog.New(slog.NewTextHandler(&logs, nil)),
		AuditCheckInterval: 5 * time.Millisecond, auditMinEvery: testAuditEvery,
		onAuditRun: func(f string, start int64) { b.runs <- auditRun{worker: i, family: f, startMS: start} },
	}
	if withSource {
		cfg.auditCheck = func(f *keyspec.Family) (audit.Check, error) {
			return audit.Check{Family: f, Source: b.source, Compare: audit.CompareBytes, RecheckAfter: time.Millisecond}, nil
		}
	}
	w, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	b.metrics, b.logs, b.stops = append(b.metrics, m), append(b.logs, &logs), append(b.stops, stop)
	return i
}

func (b *auditBundle) stopAll() {
	for _, stop := range b.stops {
		stop()
	}
}

// sum sums a per-family counter over the workers.
func (b *auditBundle) sum(c func(*Metrics) *prometheus.CounterVec) float64 {
	var n float64
	for _, m := range b.metrics {
		n += testutil.ToFloat64(c(m).WithLabelValues("product", "enforce"))
	}
	return n
}

func TestScheduledAudits_TwoWorkersRunOncePerPeriod(t *testing.T) {
	t.Parallel()
	b := setupAudits(t)
	b.start(t, true)
	b.start(t, true)

	const periods = 4
	var runs []auditRun
	for len(runs) < periods {
		runs = append(runs, <-b.runs)
	}
	b.stopAll()
	for len(b.runs) > 0 {
		runs = append(runs, <-b.runs)
	}

	// However the two workers raced, the runs' starts (Redis TIME) are a
	// whole period apart: one run per period across the fleet.
	slices.SortFunc(runs, func(x, y auditRun) int { return int(x.startMS - y.startMS) })
	for i := 1; i < len(runs); i++ {
		require.GreaterOrEqual(t, runs[i].startMS-runs[i-1].startMS, testAuditEvery.Milliseconds(), "runs %v", runs)
	}
	n := float64(len(runs))
	require.Equal(t, n, b.sum(func(m *Metrics) *prometheus.CounterVec { return m.auditRunsTotal }))
	require.Equal(t, 5*n, b.sum(func(m *Metrics) *prometheus.CounterVec { return m.auditSampledTotal }))
	require.Equal(t, 2*n, b.sum(func(m *Metrics) *prometheus.CounterVec { return m.auditInconsistentTotal }))
	for i, m := range b.metrics {
		ran := testutil.ToFloat64(m.auditRunsTotal.WithLabelValues("product", "enforce")) > 0
		require.Equal(t, ran, testutil.CollectAndCount(m.auditNines) == 1, "worker %d", i)
		if ran {
			require.InDelta(t, -math.Log10(2.0/5), testutil.ToFloat64(m.auditNines.WithLabelValues("product", "enforce")), 0.01)
			// Each inconsistency is a log line with its key.
			require.Contains(t, b.logs[i].String(), "key=product:3")
			require.Contains(t, b.logs[i].String(), "key=product:4")
		}
		require.Zero(t, testutil.ToFloat64(m.auditErrorsTotal.WithLabelValues("product")))
	}
}

// A worker with named cache targets says its scheduled audits sample the
// default cache only.
func TestScheduledAudits_SayTheyIgnoreNamedTargets(t *testing.T) {
	t.Parallel()
	b := setupAudits(t)
	b.targets = map[string]redis.UniversalClient{"eu": redistest.Client(t)}
	b.start(t, true)
	<-b.runs
	b.stopAll()
	require.Contains(t, b.logs[0].String(), "scheduled audits sample the default cache only")
	require.Contains(t, b.logs[0].String(), "targets=eu")
}

func TestScheduledAudits_OffWithoutASource(t *testing.T) {
	t.Parallel()
	b := setupAudits(t)
	without := b.start(t, false)
	with := b.start(t, true)

	// The worker with a source runs three periods' audits; the other one,
	// though just as eligible, never runs one.
	for range 3 {
		require.Equal(t, with, (<-b.runs).worker)
	}
	b.stopAll()
	require.Zero(t, testutil.CollectAndCount(b.metrics[without].auditRunsTotal))
	require.Contains(t, b.logs[without].String(), "scheduled audits off")
	require.NotContains(t, b.logs[with].String(), "scheduled audits off")
}
