package cacheaside

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus collectors of one or more Caches: create them
// once per registry and share them. Nothing is registered globally.
//
//	m, err := cacheaside.NewMetrics(reg)
//	c, err := cacheaside.New(cacheaside.Config{Redis: rdb, Metrics: m})
type Metrics struct {
	hits, misses, loads, leaseWaits, waitTimeouts prometheus.Counter
	leaseTakeovers, leaseRenewals                 prometheus.Counter
	leaseRenewalErrors                            prometheus.Counter
	staleStoresPrevented, loaderErrors            prometheus.Counter
	loadTimeouts                                  prometheus.Counter
	failureMarkers, failureMarkerReads            prometheus.Counter
	loadDuration, leaseWaitDuration               prometheus.Histogram
}

// NewMetrics creates the collectors and registers them on reg:
//
//	invalidator_cacheaside_hits_total                   reads answered from Redis (values and negative entries)
//	invalidator_cacheaside_misses_total                 reads that found nothing usable and got their value from a loader
//	invalidator_cacheaside_loads_total                  loader calls
//	invalidator_cacheaside_lease_waits_total            reads that found another reader's lease and waited
//	invalidator_cacheaside_wait_timeouts_total          waits that hit MaxWait with the lease still held (or, for a
//	                                                    read that joined a load in its process, the load still
//	                                                    running), and failed with ErrWaitTimeout (nothing loaded)
//	invalidator_cacheaside_lease_takeovers_total        waits that ended by taking the lease: the holder's lease went
//	                                                    (invalidated, given back after a load that stored nothing, or lapsed
//	                                                    because its holder died) and this reader loads instead
//	invalidator_cacheaside_lease_renewals_total         lease renewals by holders whose load outlasts LeaseTTL/3
//	invalidator_cacheaside_lease_renewal_errors_total   renewals that failed on a Redis error (two in a row and
//	                                                    the lease may lapse mid-load)
//	invalidator_cacheaside_lease_wait_duration_seconds  time spent waiting for another reader's load
//	invalidator_cacheaside_stale_stores_prevented_total stores refused because the lease was gone: an invalidation
//	                                                    deleted it during the load (or it expired)
//	invalidator_cacheaside_loader_errors_total          loader calls that failed (ErrNotFound is no error), timeouts
//	                                                    included
//	invalidator_cacheaside_load_timeouts_total          loader calls abandoned because they had not returned at
//	                                                    LoadTimeout (the loader ignores its ctx, or the database hangs)
//	invalidator_cacheaside_failure_markers_total        failed loads that left a failure marker for FailureTTL
//	invalidator_cacheaside_failure_marker_reads_total   reads that found another reader's failure marker and failed
//	                                                    with ErrLoadFailed, loading nothing
//	invalidator_cacheaside_load_duration_seconds        time spent in the loader
//
// Hits and misses count every caller, also callers merged into one load;
// the rest count events, once per load. NewMetrics fails if reg already
// holds any of them (a second NewMetrics on one registry, say); nothing
// stays registered then. Wrap reg (prometheus.WrapRegistererWith) to tell
// several Metrics apart by label.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("cacheaside metrics: nil prometheus.Registerer (pass prometheus.NewRegistry(), or leave Config.Metrics nil to record nothing)")
	}
	m := newMetrics()
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("cacheaside metrics: %w", err)
		}
		done = append(done, c)
	}
	return m, nil
}

// newMetrics returns the collectors unregistered: a Cache without
// Config.Metrics counts into these, which nobody reads.
func newMetrics() *Metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "invalidator", Subsystem: "cacheaside", Name: name, Help: help})
	}
	return &Metrics{
		hits:                 counter("hits_total", "Reads answered from Redis, values and negative entries."),
		misses:               counter("misses_total", "Reads that found nothing usable in Redis and got their value from a loader."),
		loads:                counter("loads_total", "Loader calls."),
		leaseWaits:           counter("lease_waits_total", "Reads that found another reader's lease and waited for its value."),
		waitTimeouts:         counter("wait_timeouts_total", "Waits that hit MaxWait with the lease still held, or the load joined in this process still running, and failed with ErrWaitTimeout, loading nothing."),
		leaseTakeovers:       counter("lease_takeovers_total", "Lease waits that ended by taking the lease, because the holder's lease went: invalidated, given back after a load that stored nothing, or lapsed because its holder died."),
		leaseRenewals:        counter("lease_renewals_total", "Lease renewals by holders whose load outlasts LeaseTTL/3."),
		leaseRenewalErrors:   counter("lease_renewal_errors_total", "Lease renewals that failed on a Redis error; the lease may lapse mid-load."),
		staleStoresPrevented: counter("stale_stores_prevented_total", "Stores refused because the reader's lease was gone: an invalidation deleted it during the load, or it expired."),
		loaderErrors:         counter("loader_errors_total", "Loader calls that returned an error other than ErrNotFound, or were abandoned at LoadTimeout."),
		loadTimeouts:         counter("load_timeouts_total", "Loader calls abandoned because they had not returned at LoadTimeout; what they return later is dropped."),
		failureMarkers:       counter("failure_markers_total", "Failed loads that replaced their lease with a failure marker for FailureTTL, so that other readers fail at once instead of loading."),
		failureMarkerReads:   counter("failure_marker_reads_total", "Reads that found another reader's failure marker and failed with ErrLoadFailed, loading nothing."),
		loadDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "invalidator",
			Subsystem: "cacheaside",
			Name:      "load_duration_seconds",
			Help:      "Time spent in the loader.",
			Buckets:   prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5ms to 16s
		}),
		leaseWaitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "invalidator",
			Subsystem: "cacheaside",
			Name:      "lease_wait_duration_seconds",
			Help:      "Time spent waiting for another reader's load, until its value, a takeover of the lease, or MaxWait.",
			Buckets:   prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.hits, m.misses, m.loads, m.leaseWaits, m.waitTimeouts,
		m.leaseTakeovers, m.leaseRenewals, m.leaseRenewalErrors,
		m.staleStoresPrevented, m.loaderErrors, m.loadTimeouts, m.failureMarkers, m.failureMarkerReads,
		m.loadDuration, m.leaseWaitDuration}
}
