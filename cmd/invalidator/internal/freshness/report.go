package freshness

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Report is what one run found. Durations are in milliseconds.
type Report struct {
	Seconds       float64 `json:"seconds"`
	Writers       int     `json:"writers"`
	Readers       int     `json:"readers"`
	HotKeyReaders int     `json:"hot_key_readers"`
	Processes     int     `json:"processes"`
	LagBoundMs    float64 `json:"lag_bound_ms"`
	LoaderDelayMs float64 `json:"loader_delay_ms"`
	WorkerDelayMs float64 `json:"worker_delay_ms"`
	ForcedRaces   int     `json:"forced_races"`

	// Invalidations is how each write's invalidation was sent: "enqueue
	// after commit" (the in-memory source), or "outbox" (a PostgreSQL
	// source: in the write's transaction, relayed in-process).
	Invalidations string `json:"invalidations"`
	// Writes committed, each with one invalidation.
	Writes      int64 `json:"writes"`
	WriteErrors int64 `json:"write_errors"`
	// InvalidationLag*: from a write's completion to its task applied.
	// Above LagBound, correct reads can count as stale: raise the bound.
	InvalidationLagP50Ms float64 `json:"invalidation_lag_p50_ms"`
	InvalidationLagP99Ms float64 `json:"invalidation_lag_p99_ms"`
	InvalidationLagMaxMs float64 `json:"invalidation_lag_max_ms"`

	CacheAside KindReport `json:"cacheaside"`
	Control    KindReport `json:"control"`

	// LoaderCallsHotKey is the cacheaside readers' loads of the hot key
	// during the herd: one per lease period is the goal.
	LoaderCallsHotKey int64 `json:"loader_calls_hot_key"`

	// FirstError is the first unexpected error of a write or read, if any.
	FirstError string `json:"first_error,omitempty"`
}

// KindReport is what one kind of reader got.
type KindReport struct {
	Reads int64 `json:"reads"`
	// StaleReads are reads whose staleness was at least the lag bound.
	StaleReads int64 `json:"stale_reads"`
	// SupersededReads returned a version a complete write had replaced,
	// stale or within the lag bound.
	SupersededReads int64 `json:"superseded_reads"`
	// Staleness percentiles are over superseded reads.
	StalenessP50Ms float64 `json:"staleness_p50_ms"`
	StalenessP99Ms float64 `json:"staleness_p99_ms"`
	StalenessMaxMs float64 `json:"staleness_max_ms"`
	// LoaderCalls is every load from the source.
	LoaderCalls int64 `json:"loader_calls"`
	// LoaderCallsHotKey is the loads of the hot key during the herd.
	LoaderCallsHotKey int64 `json:"loader_calls_hot_key"`
	// ForcedRaceStaleReads counts the forced races after which this kind
	// served the old row.
	ForcedRaceStaleReads int64 `json:"forced_race_stale_reads"`
	Errors               int64 `json:"errors"`
	// StaleStoresPrevented and LeaseWaits come from cacheaside's metrics.
	StaleStoresPrevented int64 `json:"stale_stores_prevented,omitempty"`
	LeaseWaits           int64 `json:"lease_waits,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (r *runner) report(elapsed time.Duration) *Report {
	c := r.cfg
	rep := &Report{
		Seconds:              elapsed.Seconds(),
		Writers:              c.Writers,
		Readers:              c.Readers,
		HotKeyReaders:        c.HotKeyReaders,
		Processes:            c.Processes,
		LagBoundMs:           ms(c.LagBound),
		LoaderDelayMs:        ms(c.LoaderDelay),
		WorkerDelayMs:        ms(c.WorkerDelay),
		ForcedRaces:          c.ForcedRaces,
		Invalidations:        InvalidationsEnqueue,
		Writes:               r.writes.Load(),
		WriteErrors:          r.writeErrs.Load(),
		InvalidationLagP50Ms: ms(r.tasks.lag.Quantile(0.5)),
		InvalidationLagP99Ms: ms(r.tasks.lag.Quantile(0.99)),
		InvalidationLagMaxMs: ms(r.tasks.lag.Max()),
	}
	for _, k := range r.kinds {
		kr := KindReport{
			Reads:                k.reads.Load(),
			StaleReads:           k.stale.Load(),
			SupersededReads:      k.superseded.Count(),
			StalenessP50Ms:       ms(k.superseded.Quantile(0.5)),
			StalenessP99Ms:       ms(k.superseded.Quantile(0.99)),
			StalenessMaxMs:       ms(k.superseded.Max()),
			LoaderCalls:          k.loads.Load(),
			LoaderCallsHotKey:    k.hotLoads.Load(),
			ForcedRaceStaleReads: k.forcedStale.Load(),
			Errors:               k.errs.Load(),
		}
		switch k.name {
		case kindCacheAside:
			kr.StaleStoresPrevented = r.counter("invalidator_cacheaside_stale_stores_prevented_total")
			kr.LeaseWaits = r.counter("invalidator_cacheaside_lease_waits_total")
			rep.CacheAside = kr
			rep.LoaderCallsHotKey = kr.LoaderCallsHotKey
		case kindControl:
			rep.Control = kr
		}
	}
	if r.ob != nil {
		rep.Invalidations = InvalidationsOutbox
	}
	if err := r.firstErr.Load(); err != nil {
		rep.FirstError = (*err).Error()
	}
	return rep
}

// Values of Report.Invalidations.
const (
	InvalidationsEnqueue = "enqueue after commit"
	InvalidationsOutbox  = "outbox"
)

// counter reads a counter of the cacheaside metrics.
func (r *runner) counter(name string) int64 {
	mfs, err := r.metrics.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return int64(mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	return 0
}

// Errors the verdict of Check wraps.
var (
	// ErrStale means cacheaside served stale reads: the property the
	// product promises does not hold (or LagBound is below the real lag;
	// compare it with the invalidation lag in the report).
	ErrStale = errors.New("cacheaside served stale reads")
	// ErrBlind means the control served no stale read, so the run did not
	// show that the checker can find any: its result proves nothing.
	ErrBlind = errors.New("the control served no stale read")
)

// Check is the verdict: nil when cacheaside served no stale read and the
// control did.
func (rep *Report) Check() error {
	var errs []error
	if n := rep.CacheAside.StaleReads; n > 0 {
		errs = append(errs, fmt.Errorf("%w: %d of %d", ErrStale, n, rep.CacheAside.Reads))
	}
	if rep.Control.StaleReads == 0 {
		errs = append(errs, fmt.Errorf("%w, so this run cannot tell stale from fresh; use --forced-races 1 or more", ErrBlind))
	}
	if rep.CacheAside.Errors+rep.Control.Errors+rep.WriteErrors > 0 {
		errs = append(errs, fmt.Errorf("%d read and %d write errors; first: %s",
			rep.CacheAside.Errors+rep.Control.Errors, rep.WriteErrors, rep.FirstError))
	}
	return errors.Join(errs...)
}

// Print writes the report for humans, the two kinds side by side.
func (rep *Report) Print(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("run          %.1fs: %d writers, %d readers of each kind, %d processes, %d forced races\n",
		rep.Seconds, rep.Writers, rep.Readers, rep.Processes, rep.ForcedRaces)
	ew.printf("delays       loader sleeps %gms after reading, worker waits %gms per task\n", rep.LoaderDelayMs, rep.WorkerDelayMs)
	ew.printf("writes       %d (%d failed), invalidations by %s, lag p50 %.1fms p99 %.1fms max %.1fms\n",
		rep.Writes, rep.WriteErrors, rep.Invalidations, rep.InvalidationLagP50Ms, rep.InvalidationLagP99Ms, rep.InvalidationLagMaxMs)
	ew.printf("stale        a read returning a value superseded by a write that completed %gms (the lag bound) or more before the read started\n\n", rep.LagBoundMs)
	ca, ct := rep.CacheAside, rep.Control
	row := func(name string, a, b any) { ew.printf("%-34s %14v %14v\n", name, a, b) }
	row("", "cacheaside", "control")
	row("reads", ca.Reads, ct.Reads)
	row("stale reads", ca.StaleReads, ct.StaleReads)
	row("superseded reads (within the bound)", ca.SupersededReads-ca.StaleReads, ct.SupersededReads-ct.StaleReads)
	row("staleness p50 (ms)", fmt.Sprintf("%.1f", ca.StalenessP50Ms), fmt.Sprintf("%.1f", ct.StalenessP50Ms))
	row("staleness p99 (ms)", fmt.Sprintf("%.1f", ca.StalenessP99Ms), fmt.Sprintf("%.1f", ct.StalenessP99Ms))
	row("staleness max (ms)", fmt.Sprintf("%.1f", ca.StalenessMaxMs), fmt.Sprintf("%.1f", ct.StalenessMaxMs))
	row("forced races ending stale", fmt.Sprintf("%d/%d", ca.ForcedRaceStaleReads, rep.ForcedRaces), fmt.Sprintf("%d/%d", ct.ForcedRaceStaleReads, rep.ForcedRaces))
	row("loader calls", ca.LoaderCalls, ct.LoaderCalls)
	row(fmt.Sprintf("loader calls, herd of %d on 1 key", rep.HotKeyReaders), ca.LoaderCallsHotKey, ct.LoaderCallsHotKey)
	row("stale stores prevented", ca.StaleStoresPrevented, "-")
	row("lease waits", ca.LeaseWaits, "-")
	row("errors", ca.Errors, ct.Errors)
	if err := rep.Check(); err != nil {
		ew.printf("\nverdict      FAIL: %v\n", err)
	} else {
		ew.printf("\nverdict      ok: no stale read with cacheaside; the control served %d\n", ct.StaleReads)
	}
	return ew.err
}

// errWriter keeps the first write error, so Print checks once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
