package outbox

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the relay's Prometheus collectors. Create them once per
// registry; any number of relays of a process may share them. A nil
// *Metrics is valid and records nothing.
type Metrics struct {
	rowsRelayed     prometheus.Counter
	tasksEnqueued   prometheus.Counter
	batchSeconds    prometheus.Histogram
	errors          *prometheus.CounterVec // stage
	lagSeconds      prometheus.Histogram
	depth           prometheus.Gauge
	oldestSeconds   prometheus.Gauge
	quarantinedRows prometheus.Counter
}

// Stages of a relay error (label "stage" of invalidator_outbox_relay_errors_total).
const (
	stageClaim   = "claim"   // begin, or DELETE ... RETURNING
	stageEnqueue = "enqueue" // the queue Redis refused or timed out
	stageCommit  = "commit"  // tasks enqueued, rows kept: they are sent again
	stageListen  = "listen"  // the LISTEN connection; the safety poll goes on
	stageStats   = "stats"   // sampling depth and age
	// moving a refused row to the quarantine table (not migrated?)
	stageQuarantine = "quarantine"
)

// NewMetrics creates the relay's collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("outbox metrics: nil prometheus.Registerer (pass prometheus.NewRegistry(), or a nil *Metrics to record nothing)")
	}
	const ns, sub = "invalidator", "outbox"
	m := &Metrics{
		rowsRelayed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rows_relayed_total",
			Help: "Outbox rows whose tasks were enqueued and which were then deleted (committed)."}),
		tasksEnqueued: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "tasks_enqueued_total",
			Help: "Tasks the relay enqueued; key deletes of many rows are merged, so usually far fewer than rows."}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_duration_seconds",
			Help:    "Time of one relay round that moved rows: claim, enqueue and commit.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "relay_errors_total",
			Help: "Relay failures by stage: claim, quarantine, enqueue, commit (rows are kept and sent again), listen, stats."}, []string{"stage"}),
		lagSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "relay_lag_seconds",
			Help:    "Time from a row's insert (the database's clock) to its task on the queue, per row.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}),
		depth: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "depth",
			Help: "Rows in the outbox table, sampled every few seconds. Rows of uncommitted transactions are not counted."}),
		oldestSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "oldest_row_age_seconds",
			Help: "Age of the oldest row in the outbox table (0 when empty), sampled every few seconds."}),
		quarantinedRows: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rows_quarantined_total",
			Help: "Outbox rows no queue would take (blank queue or kind, unknown kind, bad payload, timeout out of range), moved to <table>_quarantine: invalidations that did not happen."}),
	}
	for _, c := range []prometheus.Collector{m.rowsRelayed, m.tasksEnqueued, m.batchSeconds, m.errors, m.lagSeconds, m.depth, m.oldestSeconds, m.quarantinedRows} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("outbox metrics: %w", err)
		}
	}
	for _, s := range []string{stageClaim, stageQuarantine, stageEnqueue, stageCommit, stageListen, stageStats} {
		m.errors.WithLabelValues(s) // every stage shows, at 0, before its first error
	}
	return m, nil
}

func (m *Metrics) batch(rows, tasks int, seconds float64, lags []float64) {
	if m == nil {
		return
	}
	m.rowsRelayed.Add(float64(rows))
	m.tasksEnqueued.Add(float64(tasks))
	m.batchSeconds.Observe(seconds)
	for _, l := range lags {
		m.lagSeconds.Observe(l)
	}
}

func (m *Metrics) quarantined(rows int) {
	if m != nil && rows > 0 {
		m.quarantinedRows.Add(float64(rows))
	}
}

func (m *Metrics) failed(stage string) {
	if m != nil {
		m.errors.WithLabelValues(stage).Inc()
	}
}

func (m *Metrics) sampled(depth int64, oldest float64) {
	if m != nil {
		m.depth.Set(float64(depth))
		m.oldestSeconds.Set(oldest)
	}
}
