package worker

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/invalidator/invalidator/audit"
	"github.com/invalidator/invalidator/tasks"
)

// metricsNamespace prefixes every metric name: invalidator_....
const metricsNamespace = "invalidator"

// Label values. Every label of these metrics takes values from a small,
// fixed set (task kinds, dead-letter reasons) or from names the operator
// declared (families, classes, queues, targets, events), never from task
// payloads, so the number of series stays bounded whatever is enqueued.
const (
	// kindUnknown stands for a task type that is no invalidator kind: a
	// foreign producer could otherwise create one series per made-up type.
	kindUnknown = "unknown"

	// Dead-letter reasons (label "reason" of invalidator_dead_letters_total).
	deadPoison           = "poison"            // undecodable, invalid, unknown family
	deadUnknownKind      = "unknown_kind"      // a foreign task type in our queues
	deadRetriesExhausted = "retries_exhausted" // failed MaxRetry times
	deadMaxKeys          = "max_keys"          // a family delete stopped at the family's max_keys
	deadOther            = "other"             // any reason not listed above
)

// Buckets of the histograms.
var (
	// lagBuckets span a healthy worker (sub-millisecond to a few ms after a
	// commit) to a backlog (a minute); 0.05s is a boundary so that the
	// example alert's 50ms target is exact, not interpolated.
	lagBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	// batchKeyBuckets go to 4096: DefaultBatchMaxKeys is 1000, and a task
	// with more keys than BatchMaxKeys is sent as a batch of its own.
	batchKeyBuckets = prometheus.ExponentialBuckets(1, 2, 13)
	// batchTaskBuckets: how many tasks one batch merged; 1 means no merging.
	batchTaskBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128}
)

// Metrics are the worker's Prometheus collectors. One *Metrics serves any
// number of workers in a process; create it once per registry. A nil
// *Metrics is valid and records nothing, so call sites need no checks.
//
// Label conventions: family is "" for tasks of no family (key deletes) and
// target is "" for the default cache. Prometheus treats an empty label as an
// absent one, so these can never be mistaken for a declared name
// (select them with family="").
type Metrics struct {
	appliedTotal      *prometheus.CounterVec   // kind, family, target
	keysTotal         *prometheus.CounterVec   // target
	retriesTotal      *prometheus.CounterVec   // kind, queue
	deadTotal         *prometheus.CounterVec   // kind, reason
	lagSeconds        *prometheus.HistogramVec // kind, class
	batchKeys         prometheus.Histogram
	batchTasks        prometheus.Histogram
	scanScanned       *prometheus.GaugeVec   // family
	scanDeleted       *prometheus.GaugeVec   // family
	scansRunning      *prometheus.GaugeVec   // family
	wouldDeleteTotal  *prometheus.CounterVec // event, family
	eventActionsTotal *prometheus.CounterVec // event, family, action
	versionAheadTotal *prometheus.CounterVec // family
	familyKeptTotal   *prometheus.CounterVec // family
	deadRecordsTotal  *prometheus.CounterVec // queue, source
	deadRecordErrors  *prometheus.CounterVec // queue

	// The rescuer's (rescue.go).
	rescuedTotal       *prometheus.CounterVec // queue
	redeliveredTotal   *prometheus.CounterVec // queue
	rescueSkippedTotal *prometheus.CounterVec // queue, reason
	deadWorkersTotal   prometheus.Counter

	// The audit scheduler's (audit_schedule.go).
	auditRunsTotal         *prometheus.CounterVec // family, mode
	auditErrorsTotal       *prometheus.CounterVec // family
	auditSampledTotal      *prometheus.CounterVec // family, mode
	auditInconsistentTotal *prometheus.CounterVec // family, mode
	auditNines             *prometheus.GaugeVec   // family, mode

	now func() time.Time // the clock lag is measured with; tests replace it

	scansMu sync.Mutex     // guards scans and every scanProgress's counts
	scans   map[string]int // family -> scans in progress in this process
}

// NewMetrics creates the worker's collectors and registers them on reg. It
// fails if reg already holds any of them (for example a second NewMetrics on
// the same registry); nothing stays registered then.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("worker metrics: nil prometheus.Registerer (pass prometheus.NewRegistry(), or a nil *Metrics to record nothing)")
	}
	m := &Metrics{
		appliedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "invalidations_applied_total",
			Help: "Invalidation tasks applied to the cache, by task kind, family (empty for key deletes) and cache target (empty for the default cache).",
		}, []string{"kind", "family", "target"}),
		keysTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "keys_deleted_total",
			Help: "Cache keys removed by UNLINK (keys that existed), by cache target.",
		}, []string{"target"}),
		retriesTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "retries_total",
			Help: "Failed task runs that will be retried, by task kind and queue.",
		}, []string{"kind", "queue"}),
		deadTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "dead_letters_total",
			Help: "Tasks moved to the dead letter (archived), by task kind and reason: poison, unknown_kind, max_keys, retries_exhausted or other.",
		}, []string{"kind", "reason"}),
		lagSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "lag_seconds",
			Help:    "Time from enqueue (the producer's clock) to applied (the worker's clock), by task kind and freshness class.",
			Buckets: lagBuckets,
		}, []string{"kind", "class"}),
		batchKeys: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "batch_keys",
			Help:    "Keys per micro-batch: the keys of concurrently running key-delete tasks sent as one UNLINK pipeline.",
			Buckets: batchKeyBuckets,
		}),
		batchTasks: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "batch_tasks",
			Help:    "Tasks per micro-batch; above 1 means the batcher merged concurrent tasks.",
			Buckets: batchTaskBuckets,
		}),
		scanScanned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "family_scan_keys_scanned",
			Help: "Keys SCAN returned so far to the family deletes in progress in this process, by family; removed when the last one ends.",
		}, []string{"family"}),
		scanDeleted: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "family_scan_keys_deleted",
			Help: "Keys deleted so far by the family deletes in progress in this process, by family; removed when the last one ends.",
		}, []string{"family"}),
		scansRunning: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "family_scans_running",
			Help: "Family deletes in progress in this process, by family.",
		}, []string{"family"}),
		wouldDeleteTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "would_delete_keys_total",
			Help: "Keys a policy rule in shadow mode would have invalidated, by event and family; nothing was deleted.",
		}, []string{"event", "family"}),
		eventActionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "event_actions_total",
			Help: "Actions the policy's trigger rules took for events, by event, family and action: delete, pattern, bump, shadow, off, or refused (the event's values cannot render a key of the family: skipped).",
		}, []string{"event", "family", "action"}),
		versionAheadTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "version_ahead_of_clock_total",
			Help: "Version bumps that left the version further ahead of the cache Redis clock than the restart margin, by family: " +
				"if the version key is evicted before the clock catches up, data of superseded versions can be served again. " +
				"Should stay 0; a step back of the cache Redis clock is the likely cause.",
		}, []string{"family"}),
		familyKeptTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "family_scan_keys_kept_total",
			Help: "Keys a family delete's SCAN matched that its parameter declarations rule out (keys of other families the glob also matches), so they were kept, by family.",
		}, []string{"family"}),
		deadRecordsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "dead_letter_records_total",
			Help: "Tasks written to the dead-letter record, which asynq's archive cap does not trim, by queue and source: worker (before asynq archived the task) or sweep (copied from asynq's archive).",
		}, []string{"queue", "source"}),
		deadRecordErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "dead_letter_record_errors_total",
			Help: "Failed writes to the dead-letter record, by queue: such a task is only in asynq's archive, which asynq trims, until a sweep copies it.",
		}, []string{"queue"}),
		rescuedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "tasks_rescued_total",
			Help: "Tasks of workers that stopped sending heartbeats (crashed, killed), put back to their queue by this worker as the fleet's rescuer, by queue.",
		}, []string{"queue"}),
		redeliveredTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "tasks_redelivered_total",
			Help: "Rescued tasks that ran again on this worker, by queue.",
		}, []string{"queue"}),
		rescueSkippedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "tasks_rescue_skipped_total",
			Help: "Orphaned tasks the rescuer left to asynq's lease recovery (60-120 s), by queue and reason: max_rescues (the task keeps killing its workers) or foreign_server (an asynq server that no heartbeat accounts for may run it).",
		}, []string{"queue", "reason"}),
		deadWorkersTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "dead_workers_total",
			Help: "Workers this worker, as the fleet's rescuer, found past their heartbeat timeout.",
		}),
		auditRunsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "audit_runs_total",
			Help: "Scheduled audits this worker ran (one worker of the fleet per family and period), by family and mode (enforce or shadow).",
		}, []string{"family", "mode"}),
		auditErrorsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "audit_errors_total",
			Help: "Scheduled audits that failed (the cache unreadable, no source, the claim failed), by family.",
		}, []string{"family"}),
		auditSampledTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "audit_sampled_total",
			Help: "Cache entries scheduled audits compared with the source, by family and mode.",
		}, []string{"family", "mode"}),
		auditInconsistentTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "audit_inconsistent_total",
			Help: "Cache entries scheduled audits found stale after the re-check (an invalidation that never happened), by family and mode; each is logged with its key.",
		}, []string{"family", "mode"}),
		auditNines: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "audit_nines",
			Help: "Nines of the last scheduled audit this worker ran, -log10(inconsistent/verifiable), or log10(verifiable) with no inconsistency, by family and mode.",
		}, []string{"family", "mode"}),
		now:   time.Now,
		scans: map[string]int{},
	}
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, registerError(err)
		}
		done = append(done, c)
	}
	return m, nil
}

// collectors lists every collector of m, in registration order.
func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.appliedTotal, m.keysTotal, m.retriesTotal, m.deadTotal, m.lagSeconds, m.batchKeys, m.batchTasks,
		m.scanScanned, m.scanDeleted, m.scansRunning, m.wouldDeleteTotal, m.eventActionsTotal,
		m.versionAheadTotal,
		m.familyKeptTotal,
		m.auditRunsTotal, m.auditErrorsTotal, m.auditSampledTotal, m.auditInconsistentTotal, m.auditNines,
		m.deadRecordsTotal, m.deadRecordErrors,
		m.rescuedTotal, m.redeliveredTotal, m.rescueSkippedTotal, m.deadWorkersTotal,
	}
}

// registerError says what to do about a failed registration.
func registerError(err error) error {
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		return fmt.Errorf("register worker metrics: already registered on this registry "+
			"(create one worker.Metrics per registry and share it between workers): %w", err)
	}
	return fmt.Errorf("register worker metrics: %w", err)
}

// kindLabel bounds the kind label to the known task kinds.
func kindLabel(kind string) string {
	if tasks.IsKind(kind) {
		return kind
	}
	return kindUnknown
}

// applied records a task applied without error: kind is its task type,
// class the freshness class of its queue, family "" for key deletes, target
// "" for the default cache. The lag is now minus enqueuedAt; a zero
// enqueuedAt (an older producer that did not stamp it) skips the histogram,
// and a negative lag (producer clock ahead) counts as 0.
func (m *Metrics) applied(kind, class, family, target string, enqueuedAt time.Time) {
	if m == nil {
		return
	}
	kind = kindLabel(kind)
	m.appliedTotal.WithLabelValues(kind, family, target).Inc()
	if enqueuedAt.IsZero() {
		return
	}
	m.lagSeconds.WithLabelValues(kind, class).Observe(max(m.now().Sub(enqueuedAt), 0).Seconds())
}

// keysDeleted records n keys removed from target (what UNLINK reported).
func (m *Metrics) keysDeleted(target string, n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.keysTotal.WithLabelValues(target).Add(float64(n))
}

// retried records a failed run of a task that asynq will retry.
func (m *Metrics) retried(kind, queue string) {
	if m == nil {
		return
	}
	m.retriesTotal.WithLabelValues(kindLabel(kind), queue).Inc()
}

// dead records a task moved to the dead letter. reason is one of the dead*
// constants; anything else is counted as "other".
func (m *Metrics) dead(kind, reason string) {
	if m == nil {
		return
	}
	switch reason {
	case deadPoison, deadUnknownKind, deadRetriesExhausted, deadMaxKeys:
	default:
		reason = deadOther
	}
	m.deadTotal.WithLabelValues(kindLabel(kind), reason).Inc()
}

// deadRecorded records a task written to the dead-letter record by source
// (DeadSourceWorker or DeadSourceSweep).
func (m *Metrics) deadRecorded(queue, source string) {
	if m == nil {
		return
	}
	m.deadRecordsTotal.WithLabelValues(queue, source).Inc()
}

// deadRecordFailed records a failed write to the dead-letter record.
func (m *Metrics) deadRecordFailed(queue string) {
	if m == nil {
		return
	}
	m.deadRecordErrors.WithLabelValues(queue).Inc()
}

// batch records one micro-batch sent by the batcher: how many tasks it
// merged and how many keys it carried in all.
func (m *Metrics) batch(tasks, keys int) {
	if m == nil {
		return
	}
	m.batchTasks.Observe(float64(tasks))
	m.batchKeys.Observe(float64(keys))
}

// wouldDelete records n keys that a shadow-mode rule for event would have
// invalidated in family.
func (m *Metrics) wouldDelete(event, family string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.wouldDeleteTotal.WithLabelValues(event, family).Add(float64(n))
}

// eventAction records one action a trigger rule took for event. action must
// come from a fixed set (e.g. "delete_keys", "delete_family",
// "bump_version", "shadow", "skipped"), never from the event's attributes.
func (m *Metrics) eventAction(event, family, action string) {
	if m == nil {
		return
	}
	m.eventActionsTotal.WithLabelValues(event, family, action).Inc()
}

// versionBumped records a version bump of family: ahead says the version is
// further ahead of the cache Redis clock than keyspec.VersionRestartMargin.
// Every bump creates the family's series, at 0 until the first one ahead, so
// that an alert on its increase sees the first.
func (m *Metrics) versionBumped(family string, ahead bool) {
	if m == nil {
		return
	}
	c := m.versionAheadTotal.WithLabelValues(family)
	if ahead {
		c.Inc()
	}
}

// rescued records a task of a dead worker put back to queue.
func (m *Metrics) rescued(queue string) {
	if m == nil {
		return
	}
	m.rescuedTotal.WithLabelValues(queue).Inc()
}

// redelivered records a rescued task that ran again here.
func (m *Metrics) redelivered(queue string) {
	if m == nil {
		return
	}
	m.redeliveredTotal.WithLabelValues(queue).Inc()
}

// rescueSkipped records an orphaned task left to asynq; reason is
// "max_rescues" or "foreign_server".
func (m *Metrics) rescueSkipped(queue, reason string) {
	if m == nil {
		return
	}
	m.rescueSkippedTotal.WithLabelValues(queue, reason).Inc()
}

// deadWorker records a worker found past its heartbeat timeout.
func (m *Metrics) deadWorker() {
	if m == nil {
		return
	}
	m.deadWorkersTotal.Inc()
}

// scanStarted records the start of a family delete and returns the handle
// its progress goes through. Several scans of one family may run at once in
// a process (different parameters, or a scan per cluster master sharing one
// handle): the gauges hold their sum, and the family's series disappear
// when its last scan is done. A nil *Metrics returns a nil handle, which is
// also valid.
func (m *Metrics) scanStarted(family string) *scanProgress {
	if m == nil {
		return nil
	}
	m.scansMu.Lock()
	defer m.scansMu.Unlock()
	m.scans[family]++
	m.scansRunning.WithLabelValues(family).Set(float64(m.scans[family]))
	return &scanProgress{m: m, family: family}
}

// scanProgress is the progress of one family delete in the gauges. Its
// methods are safe for concurrent use, so the per-master scans of one task
// can share it.
type scanProgress struct {
	m      *Metrics
	family string
	// Guarded by m.scansMu: what this scan added, taken back by done.
	scanned, deleted int64
	ended            bool
}

// add records scanned more keys returned by SCAN and deleted more keys
// removed. Calls after done are ignored, so no stray series comes back.
func (p *scanProgress) add(scanned, deleted int64) {
	if p == nil {
		return
	}
	p.m.scansMu.Lock()
	defer p.m.scansMu.Unlock()
	if p.ended {
		return
	}
	p.scanned += scanned
	p.deleted += deleted
	p.m.scanScanned.WithLabelValues(p.family).Add(float64(scanned))
	p.m.scanDeleted.WithLabelValues(p.family).Add(float64(deleted))
}

// done ends the scan, whatever its outcome (finished, paused, failed): its
// counts leave the gauges. Only the first call counts.
func (p *scanProgress) done() {
	if p == nil {
		return
	}
	m := p.m
	m.scansMu.Lock()
	defer m.scansMu.Unlock()
	if p.ended {
		return
	}
	p.ended = true
	m.scans[p.family]--
	if m.scans[p.family] > 0 {
		m.scansRunning.WithLabelValues(p.family).Set(float64(m.scans[p.family]))
		m.scanScanned.WithLabelValues(p.family).Sub(float64(p.scanned))
		m.scanDeleted.WithLabelValues(p.family).Sub(float64(p.deleted))
		return
	}
	// The last scan of the family: drop its series rather than export zeros
	// for every family ever scanned.
	delete(m.scans, p.family)
	m.scansRunning.DeleteLabelValues(p.family)
	m.scanScanned.DeleteLabelValues(p.family)
	m.scanDeleted.DeleteLabelValues(p.family)
}

// familyKeysKept records n keys a family delete's SCAN returned that are
// not the family's, and so were kept.
func (m *Metrics) familyKeysKept(family string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.familyKeptTotal.WithLabelValues(family).Add(float64(n))
}

// auditScheduled creates a scheduled family's counters at 0, so that
// increase() sees its first inconsistency: a series born at 2 would show no
// increase, and the alert would miss it.
func (m *Metrics) auditScheduled(family, mode string) {
	if m == nil {
		return
	}
	m.auditRunsTotal.WithLabelValues(family, mode)
	m.auditErrorsTotal.WithLabelValues(family)
	m.auditSampledTotal.WithLabelValues(family, mode)
	m.auditInconsistentTotal.WithLabelValues(family, mode)
}

// audited records a scheduled audit's report.
func (m *Metrics) audited(family, mode string, rep audit.Report) {
	if m == nil {
		return
	}
	m.auditRunsTotal.WithLabelValues(family, mode).Inc()
	m.auditSampledTotal.WithLabelValues(family, mode).Add(float64(rep.Sampled))
	m.auditInconsistentTotal.WithLabelValues(family, mode).Add(float64(rep.Inconsistent))
	if rep.Nines != nil {
		m.auditNines.WithLabelValues(family, mode).Set(*rep.Nines)
	}
}

// auditFailed counts a scheduled audit that failed.
func (m *Metrics) auditFailed(family string) {
	if m == nil {
		return
	}
	m.auditErrorsTotal.WithLabelValues(family).Inc()
}
