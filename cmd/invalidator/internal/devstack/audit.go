package devstack

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/invalidator/invalidator/audit"
	"github.com/invalidator/invalidator/keyspec"
)

// auditSample is how many keys of each family an audit compares: most of a
// demo family's cached keys, so a forgotten invalidation is found in a few
// audits.
const auditSample = 200

// auditLoop audits the workload's families against its source, as an
// application would register its own loaders as audit sources.
type auditLoop struct {
	a      *audit.Auditor
	checks []audit.Check
	every  time.Duration
	log    *slog.Logger

	mu  sync.Mutex   // guards sum
	sum AuditSummary // every audit so far
}

func newAuditLoop(cfg Config, fams []*keyspec.Family, src *source) (*auditLoop, error) {
	// The workload's logger already names its subsystem; the audit's lines
	// say "audit:" themselves.
	a, err := audit.New(cfg.Cache, audit.Config{Sample: auditSample, RecheckAfter: cfg.AuditRecheck, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("devstack: audit: %w", err)
	}
	l := &auditLoop{a: a, every: cfg.AuditEvery, log: cfg.Logger}
	for k, rk := range cfg.Rows {
		// A key's parameters name an entity; the row kind's Params is the
		// only map between the two, so invert it over the ids in use.
		ids := make(map[string]int, cfg.Entities)
		for id := 1; id <= cfg.Entities; id++ {
			ids[paramsKey(rk.Params(id))] = id
		}
		l.checks = append(l.checks, audit.Check{
			Family: fams[k],
			Source: audit.SourceFunc(func(ctx context.Context, p map[string]string) ([]byte, bool, error) {
				id, ok := ids[paramsKey(p)]
				if !ok {
					return nil, false, nil // no such entity: the loader never cached it
				}
				v, err := src.load(ctx, rowName(rk, id))
				if err != nil {
					return nil, false, err
				}
				return []byte(strconv.FormatInt(v, 10)), true, nil // what the readers' loader returns
			}),
		})
	}
	return l, nil
}

// run audits every family each l.every until load ends, then returns once
// the audit under way is done; ctx ends it at once (Ctrl-C).
func (l *auditLoop) run(ctx context.Context, load <-chan struct{}) {
	tick := time.NewTicker(l.every)
	defer tick.Stop()
	for {
		select {
		case <-load:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// The families at once: a pass then takes one re-check, not one
		// per family.
		var wg sync.WaitGroup
		for _, c := range l.checks {
			wg.Go(func() {
				rep, err := l.a.Audit(ctx, c)
				if err != nil {
					if ctx.Err() == nil {
						l.log.Warn("audit failed", "family", c.Family.Name, "err", err)
					}
					return
				}
				l.mu.Lock()
				l.sum.Sampled += rep.Sampled
				l.sum.Inconsistent += rep.Inconsistent
				l.mu.Unlock()
			})
		}
		wg.Wait()
	}
}

func (l *auditLoop) total() AuditSummary {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sum
}

// paramsKey is a map of parameters as one comparable string.
func paramsKey(p map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(p)) {
		b.WriteString(strconv.Quote(k) + "=" + strconv.Quote(p[k]) + ";")
	}
	return b.String()
}
