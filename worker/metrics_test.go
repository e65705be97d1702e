package worker

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/audit"
	"github.com/invalidator/invalidator/tasks"
)

// newTestMetrics returns metrics on a fresh registry, with a fixed clock.
func newTestMetrics(t *testing.T, now time.Time) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	m.now = func() time.Time { return now }
	return m, reg
}

func TestMetrics_Applied(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m, reg := newTestMetrics(t, now)

	m.applied(tasks.KindDeleteKeys, "critical", "", "", now.Add(-7812500*time.Nanosecond))  // 2^-7 s: sums exactly
	m.applied(tasks.KindDeleteKeys, "critical", "", "", now.Add(-31250000*time.Nanosecond)) // 2^-5 s
	m.applied(tasks.KindDeleteFamily, "bulk", "catalog", "eu", now.Add(-2*time.Second))
	m.applied(tasks.KindBumpVersion, "standard", "user_feed", "", time.Time{})     // no stamp: no lag
	m.applied(tasks.KindDeleteKeys, "critical", "", "", now.Add(time.Second))      // clock skew: lag 0
	m.applied("made-up:"+t.Name(), "standard", "", "", now.Add(-time.Millisecond)) // bounded kind

	require.Equal(t, 3.0, testutil.ToFloat64(m.appliedTotal.WithLabelValues(tasks.KindDeleteKeys, "", "")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.appliedTotal.WithLabelValues(tasks.KindDeleteFamily, "catalog", "eu")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.appliedTotal.WithLabelValues(tasks.KindBumpVersion, "user_feed", "")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.appliedTotal.WithLabelValues(kindUnknown, "", "")))
	require.Equal(t, 4, testutil.CollectAndCount(m.appliedTotal))

	// The bump had no enqueue time: three histogram series, five observations.
	require.Equal(t, 3, testutil.CollectAndCount(m.lagSeconds))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP invalidator_lag_seconds Time from enqueue (the producer's clock) to applied (the worker's clock), by task kind and freshness class.
# TYPE invalidator_lag_seconds histogram
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="0.0005"} 1
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="0.001"} 1
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="0.0025"} 1
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="0.005"} 1
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="0.01"} 2
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="0.025"} 2
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="0.05"} 3
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="0.1"} 3
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="0.25"} 3
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="0.5"} 3
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="1"} 3
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="2.5"} 3
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="5"} 3
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="10"} 3
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="30"} 3
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="60"} 3
invalidator_lag_seconds_bucket{class="critical",kind="invalidate:keys",le="+Inf"} 3
invalidator_lag_seconds_sum{class="critical",kind="invalidate:keys"} 0.0390625
invalidator_lag_seconds_count{class="critical",kind="invalidate:keys"} 3
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="0.0005"} 0
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="0.001"} 0
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="0.0025"} 0
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="0.005"} 0
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="0.01"} 0
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="0.025"} 0
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="0.05"} 0
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="0.1"} 0
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="0.25"} 0
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="0.5"} 0
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="1"} 0
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="2.5"} 1
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="5"} 1
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="10"} 1
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="30"} 1
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="60"} 1
invalidator_lag_seconds_bucket{class="bulk",kind="invalidate:family",le="+Inf"} 1
invalidator_lag_seconds_sum{class="bulk",kind="invalidate:family"} 2
invalidator_lag_seconds_count{class="bulk",kind="invalidate:family"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="0.0005"} 0
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="0.001"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="0.0025"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="0.005"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="0.01"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="0.025"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="0.05"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="0.1"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="0.25"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="0.5"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="1"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="2.5"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="5"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="10"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="30"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="60"} 1
invalidator_lag_seconds_bucket{class="standard",kind="unknown",le="+Inf"} 1
invalidator_lag_seconds_sum{class="standard",kind="unknown"} 0.001
invalidator_lag_seconds_count{class="standard",kind="unknown"} 1
`), "invalidator_lag_seconds"))
}

func TestMetrics_KeysRetriesDeadLetters(t *testing.T) {
	t.Parallel()
	m, _ := newTestMetrics(t, time.Now())

	m.keysDeleted("", 500)
	m.keysDeleted("", 3)
	m.keysDeleted("eu", 7)
	m.keysDeleted("eu", 0) // nothing existed: no change, no new series
	m.keysDeleted("us", 0)
	require.Equal(t, 503.0, testutil.ToFloat64(m.keysTotal.WithLabelValues("")))
	require.Equal(t, 7.0, testutil.ToFloat64(m.keysTotal.WithLabelValues("eu")))
	require.Equal(t, 2, testutil.CollectAndCount(m.keysTotal))

	m.retried(tasks.KindDeleteKeys, "invalidator-critical")
	m.retried(tasks.KindDeleteKeys, "invalidator-critical")
	m.retried(tasks.KindDeleteFamily, "invalidator-bulk")
	require.Equal(t, 2.0, testutil.ToFloat64(m.retriesTotal.WithLabelValues(tasks.KindDeleteKeys, "invalidator-critical")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.retriesTotal.WithLabelValues(tasks.KindDeleteFamily, "invalidator-bulk")))

	m.dead(tasks.KindDeleteKeys, deadPoison)
	m.dead(tasks.KindDeleteFamily, deadRetriesExhausted)
	m.dead(tasks.KindDeleteFamily, deadMaxKeys)
	m.dead("email:send", deadUnknownKind)
	m.dead(tasks.KindDeleteKeys, "connection refused to 10.0.0.1") // free text: bounded to "other"
	require.Equal(t, 1.0, testutil.ToFloat64(m.deadTotal.WithLabelValues(tasks.KindDeleteKeys, deadPoison)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.deadTotal.WithLabelValues(tasks.KindDeleteFamily, deadRetriesExhausted)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.deadTotal.WithLabelValues(kindUnknown, deadUnknownKind)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.deadTotal.WithLabelValues(tasks.KindDeleteKeys, deadOther)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.deadTotal.WithLabelValues(tasks.KindDeleteFamily, deadMaxKeys)))
	require.Equal(t, 5, testutil.CollectAndCount(m.deadTotal))
}

func TestMetrics_Batch(t *testing.T) {
	t.Parallel()
	m, reg := newTestMetrics(t, time.Now())
	m.batch(1, 1)
	m.batch(3, 700)
	m.batch(1, 5000) // a task bigger than BatchMaxKeys goes alone
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP invalidator_batch_tasks Tasks per micro-batch; above 1 means the batcher merged concurrent tasks.
# TYPE invalidator_batch_tasks histogram
invalidator_batch_tasks_bucket{le="1"} 2
invalidator_batch_tasks_bucket{le="2"} 2
invalidator_batch_tasks_bucket{le="4"} 3
invalidator_batch_tasks_bucket{le="8"} 3
invalidator_batch_tasks_bucket{le="16"} 3
invalidator_batch_tasks_bucket{le="32"} 3
invalidator_batch_tasks_bucket{le="64"} 3
invalidator_batch_tasks_bucket{le="128"} 3
invalidator_batch_tasks_bucket{le="+Inf"} 3
invalidator_batch_tasks_sum 5
invalidator_batch_tasks_count 3
`), "invalidator_batch_tasks"))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP invalidator_batch_keys Keys per micro-batch: the keys of concurrently running key-delete tasks sent as one UNLINK pipeline.
# TYPE invalidator_batch_keys histogram
invalidator_batch_keys_bucket{le="1"} 1
invalidator_batch_keys_bucket{le="2"} 1
invalidator_batch_keys_bucket{le="4"} 1
invalidator_batch_keys_bucket{le="8"} 1
invalidator_batch_keys_bucket{le="16"} 1
invalidator_batch_keys_bucket{le="32"} 1
invalidator_batch_keys_bucket{le="64"} 1
invalidator_batch_keys_bucket{le="128"} 1
invalidator_batch_keys_bucket{le="256"} 1
invalidator_batch_keys_bucket{le="512"} 1
invalidator_batch_keys_bucket{le="1024"} 2
invalidator_batch_keys_bucket{le="2048"} 2
invalidator_batch_keys_bucket{le="4096"} 2
invalidator_batch_keys_bucket{le="+Inf"} 3
invalidator_batch_keys_sum 5701
invalidator_batch_keys_count 3
`), "invalidator_batch_keys"))
}

func TestMetrics_ScanProgress(t *testing.T) {
	t.Parallel()
	m, _ := newTestMetrics(t, time.Now())
	scanned := func(f string) float64 { return testutil.ToFloat64(m.scanScanned.WithLabelValues(f)) }
	deleted := func(f string) float64 { return testutil.ToFloat64(m.scanDeleted.WithLabelValues(f)) }

	a := m.scanStarted("catalog")
	b := m.scanStarted("catalog") // another parameter set of the same family
	c := m.scanStarted("user_profile")
	a.add(1000, 0)
	a.add(0, 400)
	b.add(200, 10)
	c.add(5, 5)
	require.Equal(t, 1200.0, scanned("catalog"))
	require.Equal(t, 410.0, deleted("catalog"))
	require.Equal(t, 2.0, testutil.ToFloat64(m.scansRunning.WithLabelValues("catalog")))

	// One scan ends: its share leaves the gauges, the other's stays.
	a.done()
	a.done()      // idempotent
	a.add(99, 99) // late report after done: ignored
	require.Equal(t, 200.0, scanned("catalog"))
	require.Equal(t, 10.0, deleted("catalog"))
	require.Equal(t, 1.0, testutil.ToFloat64(m.scansRunning.WithLabelValues("catalog")))

	// The last scan of a family removes its series.
	b.done()
	c.done()
	require.Zero(t, testutil.CollectAndCount(m.scanScanned))
	require.Zero(t, testutil.CollectAndCount(m.scanDeleted))
	require.Zero(t, testutil.CollectAndCount(m.scansRunning))
}

// The per-master scans of one cluster task share a handle from goroutines.
func TestMetrics_ScanProgressConcurrent(t *testing.T) {
	t.Parallel()
	m, _ := newTestMetrics(t, time.Now())
	keep := m.scanStarted("catalog") // keeps the series alive for the check
	p := m.scanStarted("catalog")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				p.add(10, 1)
			}
		})
	}
	wg.Wait()
	require.Equal(t, 8000.0, testutil.ToFloat64(m.scanScanned.WithLabelValues("catalog")))
	p.done()
	require.Zero(t, testutil.ToFloat64(m.scanScanned.WithLabelValues("catalog")))
	keep.done()
}

func TestMetrics_ShadowAndEvents(t *testing.T) {
	t.Parallel()
	m, _ := newTestMetrics(t, time.Now())
	m.wouldDelete("user.updated", "user_profile", 3)
	m.wouldDelete("user.updated", "user_profile", 2)
	m.wouldDelete("user.updated", "user_feed", 0)
	require.Equal(t, 5.0, testutil.ToFloat64(m.wouldDeleteTotal.WithLabelValues("user.updated", "user_profile")))
	require.Equal(t, 1, testutil.CollectAndCount(m.wouldDeleteTotal))

	m.eventAction("user.updated", "user_profile", "delete_keys")
	m.eventAction("user.updated", "user_profile", "shadow")
	m.eventAction("user.updated", "user_profile", "shadow")
	require.Equal(t, 1.0, testutil.ToFloat64(m.eventActionsTotal.WithLabelValues("user.updated", "user_profile", "delete_keys")))
	require.Equal(t, 2.0, testutil.ToFloat64(m.eventActionsTotal.WithLabelValues("user.updated", "user_profile", "shadow")))
}

// A nil *Metrics means metrics are off: every method is a no-op.
func TestMetrics_NilIsOff(t *testing.T) {
	t.Parallel()
	var m *Metrics
	require.NotPanics(t, func() {
		m.applied(tasks.KindDeleteKeys, "standard", "", "", time.Now())
		m.keysDeleted("", 1)
		m.retried(tasks.KindDeleteKeys, "q")
		m.dead(tasks.KindDeleteKeys, deadPoison)
		m.batch(1, 1)
		m.wouldDelete("e", "f", 1)
		m.eventAction("e", "f", "a")
		p := m.scanStarted("f")
		p.add(1, 1)
		p.done()
	})
}

func TestNewMetrics_RegisterTwiceFails(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	_, err := NewMetrics(reg)
	require.NoError(t, err)
	_, err = NewMetrics(reg)
	require.ErrorContains(t, err, "already registered on this registry")
	require.ErrorAs(t, err, new(prometheus.AlreadyRegisteredError))

	_, err = NewMetrics(nil)
	require.ErrorContains(t, err, "nil prometheus.Registerer")
}

// A failed NewMetrics leaves nothing behind on the registry.
func TestNewMetrics_FailureRegistersNothing(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	// Something else already owns one of the names (not the first one).
	require.NoError(t, reg.Register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "event_actions_total", Help: "someone else's",
	}, []string{"x"})))
	_, err := NewMetrics(reg)
	require.Error(t, err)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, mfs, 0, "the vector above has no series yet; nothing of ours may remain")
}

// Every metric follows the Prometheus naming conventions (promlint).
func TestMetrics_Lint(t *testing.T) {
	t.Parallel()
	now := time.Now()
	m, reg := newTestMetrics(t, now)
	m.applied(tasks.KindDeleteKeys, "standard", "", "", now)
	m.keysDeleted("", 1)
	m.retried(tasks.KindDeleteKeys, "q")
	m.dead(tasks.KindDeleteKeys, deadPoison)
	m.batch(1, 1)
	m.wouldDelete("e", "f", 1)
	m.eventAction("e", "f", "a")
	m.scanStarted("f").add(1, 1)
	m.versionBumped("f", true)
	m.familyKeysKept("f", 1)
	m.deadRecorded("q", DeadSourceWorker)
	m.deadRecordFailed("q")
	m.rescued("q")
	m.redelivered("q")
	m.rescueSkipped("q", "max_rescues")
	m.deadWorker()
	nines := 1.5
	m.audited("f", "enforce", audit.Report{Sampled: 1, Nines: &nines})
	m.auditFailed("f")
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, mfs, len(m.collectors()))
}
