package cdc

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a Reader's Prometheus collectors. Create them once per
// registry. A nil *Metrics is valid and records nothing.
type Metrics struct {
	changes        *prometheus.CounterVec // table
	published      *prometheus.CounterVec // event
	skipped        *prometheus.CounterVec // table, reason
	lagSeconds     prometheus.Histogram
	errors         *prometheus.CounterVec // stage
	retainedBytes  prometheus.Gauge
	confirmedLag   prometheus.Gauge
	active         prometheus.Gauge
	pendingPubs    prometheus.Gauge
	confirmedBytes prometheus.Gauge
}

// Stages of a reader error (label "stage" of invalidator_cdc_errors_total).
const (
	stageConnect = "connect" // the replication connection, or START_REPLICATION
	stageStream  = "stream"  // the connection failed mid-stream
	stageEnqueue = "enqueue" // the queue Redis refused: the changes are read again
	stageStats   = "stats"   // sampling the slot
)

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("cdc metrics: nil prometheus.Registerer (pass prometheus.NewRegistry(), or a nil *Metrics to record nothing)")
	}
	const ns, sub = "invalidator", "cdc"
	m := &Metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "changes_read_total",
			Help: "Row changes (insert, update, delete, truncate) of the policy's tables read from the replication stream."}, []string{"table"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "events_published_total",
			Help: "Events enqueued for row changes; the same event and values within one batch are enqueued once."}, []string{"event"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "changes_skipped_total",
			Help: "Row versions that published nothing, by reason: null or empty value, refused by policy (no key can hold the value), truncate (a family of a truncated table that cannot be deleted whole), unchanged toast, missing old row. Each is logged."}, []string{"table", "reason"}),
		lagSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "commit_to_enqueue_seconds",
			Help:    "Time from a transaction's commit (the database's clock) to its events on the queue, per transaction that published.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "errors_total",
			Help: "Reader failures by stage: connect, stream, enqueue (the changes are read again from the slot), stats."}, []string{"stage"}),
		retainedBytes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "slot_retained_wal_bytes",
			Help: "WAL the slot makes PostgreSQL keep: the current WAL position minus the slot's restart_lsn, sampled. An abandoned slot grows it without end."}),
		confirmedLag: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "slot_confirmed_lag_bytes",
			Help: "The current WAL position minus the slot's confirmed_flush_lsn: WAL not yet invalidated, sampled."}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "active",
			Help: "1 while this process reads the slot, 0 while it waits as a standby or reconnects."}),
		pendingPubs: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "pending_events",
			Help: "Events read and not yet enqueued; bounded by the reader's max pending."}),
		confirmedBytes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "confirmed_lsn",
			Help: "The last LSN this process confirmed to PostgreSQL, as a number: every change up to it is enqueued."}),
	}
	for _, c := range []prometheus.Collector{m.changes, m.published, m.skipped, m.lagSeconds, m.errors, m.retainedBytes,
		m.confirmedLag, m.active, m.pendingPubs, m.confirmedBytes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("cdc metrics: %w", err)
		}
	}
	for _, s := range []string{stageConnect, stageStream, stageEnqueue, stageStats} {
		m.errors.WithLabelValues(s)
	}
	return m, nil
}

func (m *Metrics) failed(stage string) {
	if m != nil {
		m.errors.WithLabelValues(stage).Inc()
	}
}

func (m *Metrics) change(table string) {
	if m != nil {
		m.changes.WithLabelValues(table).Inc()
	}
}

func (m *Metrics) skip(s skip) {
	if m != nil {
		m.skipped.WithLabelValues(s.table, s.reason).Inc()
	}
}

func (m *Metrics) flushed(events map[string]int, lags []float64) {
	if m == nil {
		return
	}
	for e, n := range events {
		m.published.WithLabelValues(e).Add(float64(n))
	}
	for _, l := range lags {
		m.lagSeconds.Observe(l)
	}
}

func (m *Metrics) setActive(on bool) {
	if m == nil {
		return
	}
	if on {
		m.active.Set(1)
	} else {
		m.active.Set(0)
	}
}

func (m *Metrics) pending(n int) {
	if m != nil {
		m.pendingPubs.Set(float64(n))
	}
}

func (m *Metrics) confirmed(lsn uint64) {
	if m != nil {
		m.confirmedBytes.Set(float64(lsn))
	}
}

func (m *Metrics) slot(retained, lag int64) {
	if m != nil {
		m.retainedBytes.Set(float64(retained))
		m.confirmedLag.Set(float64(lag))
	}
}
