package worker

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/audit"
	"github.com/invalidator/invalidator/keyspec"
)

// Scheduled audits (keyspec.Audit.Every). asynq's scheduler would enqueue a
// periodic task once per scheduler, that is once per worker; instead each
// family has a key in the queue Redis holding the start of its last run,
// and a worker runs a due audit only if its script call moved that key
// forward. Redis TIME is the one clock, so skewed worker clocks cannot make
// two runs in one period. The winner runs the audit in-process, in one
// goroutine apart from the task path and rate-limited (Config.AuditRate), so
// it needs no queue of its own and cannot delay invalidations. A worker that
// dies during its run loses that period's audit; the next period runs as due.
//
// Scheduled audits sample Config.Cache, the default target, only. The
// policy does not say which cache holds a family: a producer names each
// task's target (enqueue.Config.Target), so one family may even live on
// several. Sampling every target for every family would cost a scan
// budget per target and find nothing on most; a family cached on a named
// target is audited with `invalidator audit --cache-redis` against that
// cache, and a scheduled report that found none of its keys says so
// (audit.Report.Note).

// fleetAuditKey holds the start (Redis TIME, ms) of a family's last
// scheduled audit; {fleet} keeps it in the slot of the other fleet keys.
func fleetAuditKey(family string) string { return "invalidator:{fleet}:audit:" + family }

// DefaultAuditCheckInterval is how often a worker looks for due audits.
const DefaultAuditCheckInterval = 15 * time.Second

// claimAuditScript claims a family's audit for this period.
var claimAuditScript = redis.NewScript(`
-- KEYS[1] -> invalidator:{fleet}:audit:<family> (string: start of the last run, Redis TIME in ms)
-- ARGV[1] -> the family's audit period in ms
-- Output: the start time in ms when the caller won this period's run, else 0
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if now - last < period then
  return 0
end
-- The key outlives its period so the next claim sees it; it expires once
-- the family stops being audited.
redis.call('SET', KEYS[1], now, 'PX', 2 * period)
return now
`)

// claimAudit reports whether this worker runs the family's audit now, and
// the run's start time (Redis TIME, ms).
func claimAudit(ctx context.Context, q redis.UniversalClient, family string, every time.Duration) (int64, bool, error) {
	n, err := claimAuditScript.Run(ctx, q, []string{fleetAuditKey(family)}, every.Milliseconds()).Int64()
	if err != nil {
		return 0, false, fmt.Errorf("claim audit of family %q: %w", family, err)
	}
	return n, n > 0, nil
}

// auditScheduler runs the due audits of the policy's families.
type auditScheduler struct {
	w        *Worker
	log      *slog.Logger
	check    func(*keyspec.Family) (audit.Check, error)
	minEvery time.Duration
	auditors map[int]*audit.Auditor // by sample size; used by run's goroutine only
	warned   map[string]bool        // families warned about a too short period; run's goroutine only
}

// startAudits starts the scheduled audits, unless the worker has no audit
// source; the returned func waits for them to stop after ctx ends.
func (w *Worker) startAudits(ctx context.Context) (wait func()) {
	log := w.log.With("component", "audit-scheduler")
	check := w.cfg.auditCheck
	if check == nil && w.cfg.AuditSource != nil {
		check = func(f *keyspec.Family) (audit.Check, error) { return audit.PolicyCheck(f, w.cfg.AuditSource) }
	}
	if check == nil {
		log.Info("scheduled audits off: the worker has no audit source (--audit-source-dsn)")
		return func() {}
	}
	if len(w.cfg.Targets) > 0 {
		log.Warn("scheduled audits sample the default cache only, not the named cache targets: the policy does not say which cache holds a family; audit a family cached on a target with invalidator audit --cache-redis",
			"targets", strings.Join(slices.Sorted(maps.Keys(w.cfg.Targets)), ","))
	}
	s := &auditScheduler{w: w, log: log, check: check, minEvery: w.cfg.auditMinEvery,
		auditors: map[int]*audit.Auditor{}, warned: map[string]bool{}}
	var wg sync.WaitGroup
	wg.Go(func() { s.run(ctx) })
	return wg.Wait
}

func (s *auditScheduler) run(ctx context.Context) {
	tick := time.NewTicker(s.w.cfg.AuditCheckInterval)
	defer tick.Stop()
	// Logged after the first pass, so the families due at start have run
	// (or were claimed by another worker) when it appears.
	first := true
	for {
		scheduled := s.runDue(ctx)
		if first && ctx.Err() == nil {
			first = false
			s.log.Info("scheduled audits on", "families", strings.Join(scheduled, ","),
				"check_interval", s.w.cfg.AuditCheckInterval.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// runDue runs, one after the other, the audits this worker claims, and
// returns the families with a schedule.
func (s *auditScheduler) runDue(ctx context.Context) (scheduled []string) {
	p := s.w.Policy()
	for _, name := range slices.Sorted(maps.Keys(p.Families)) {
		f := p.Families[name]
		if f.Audit == nil || f.Audit.Every <= 0 || f.Mode == keyspec.ModeOff || ctx.Err() != nil {
			continue
		}
		if f.Audit.Every < s.minEvery {
			if !s.warned[name] {
				s.warned[name] = true
				s.log.Warn("family not audited: its audit period is below the minimum", "family", name,
					"audit_every", f.Audit.Every.String(), "min", s.minEvery.String())
			}
			continue
		}
		scheduled = append(scheduled, name)
		s.w.metrics.auditScheduled(name, string(f.Mode))
		start, won, err := claimAudit(ctx, s.w.cfg.Queue, name, f.Audit.Every)
		if err != nil {
			if ctx.Err() == nil {
				s.w.metrics.auditFailed(name)
				s.log.Warn("scheduled audit not claimed; next try in "+s.w.cfg.AuditCheckInterval.String(), "family", name, "err", err)
			}
			continue
		}
		if won {
			s.audit(ctx, f, start)
		}
	}
	return scheduled
}

// audit runs one family's audit and records its results.
func (s *auditScheduler) audit(ctx context.Context, f *keyspec.Family, start int64) {
	log := s.log.With("family", f.Name, "mode", string(f.Mode))
	fail := func(err error) {
		s.w.metrics.auditFailed(f.Name)
		log.Error("scheduled audit failed", "err", err)
	}
	c, err := s.check(f)
	if err != nil {
		fail(err)
		return
	}
	a, err := s.auditor(f.Audit.Sample)
	if err != nil {
		fail(err)
		return
	}
	rep, err := a.Audit(ctx, c)
	if err != nil {
		if ctx.Err() == nil {
			fail(err)
		}
		return
	}
	s.w.metrics.audited(f.Name, string(f.Mode), rep)
	if s.w.cfg.onAuditRun != nil {
		s.w.cfg.onAuditRun(f.Name, start)
	}
	attrs := []any{"sampled", rep.Sampled, "inconsistent", rep.Inconsistent, "in_flight", rep.InFlight,
		"unverifiable", rep.Unverifiable, "skipped", rep.Skipped}
	if rep.Nines != nil {
		attrs = append(attrs, "nines", *rep.Nines, "nines_at_least", rep.NinesAtLeast)
	}
	if rep.Note != "" {
		attrs = append(attrs, "note", rep.Note)
	}
	if rep.Inconsistent > 0 {
		log.Error("scheduled audit found stale cache entries", attrs...)
		return
	}
	log.Info("scheduled audit done", attrs...)
}

// auditor returns the auditor of a sample size; auditors share nothing, but
// only this goroutine runs them, one at a time, so AuditRate still caps the
// worker's audit reads.
func (s *auditScheduler) auditor(sample int) (*audit.Auditor, error) {
	if a, ok := s.auditors[sample]; ok {
		return a, nil
	}
	a, err := audit.New(s.w.cfg.Cache, audit.Config{Sample: sample, Rate: s.w.cfg.AuditRate, Logger: s.log})
	if err != nil {
		return nil, err
	}
	s.auditors[sample] = a
	return a, nil
}
