package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/audit"
	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
)

// envAuditDSN is read when --source-dsn is not given; like the outbox DSN,
// it keeps a password off the command line.
const envAuditDSN = "INVALIDATOR_AUDIT_DSN"

type auditOpts struct {
	dsn        string
	families   []string
	sample     int
	scanBudget int
	rate       float64
	heal       bool
	asJSON     bool
	showValues bool
	cacheURL   string
}

// auditResult is the --json output of audit.
type auditResult struct {
	Families []audit.Report `json:"families"`
	// Healed counts the stale keys whose deletion --heal enqueued; absent
	// without --heal.
	Healed *int `json:"healed,omitempty"`
}

func newAuditCmd(a *app) *cobra.Command {
	o := &auditOpts{}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Compare sampled cache entries with PostgreSQL, per family with an audit section",
		Long: `Sample the cached keys of each family whose policy declares an audit section
(all of them, or the --family ones), compare each value with the row of the
section's query, and re-check a difference after the section's recheck_after
before calling it inconsistent: a value that changed in between is in flight.
A key whose query fails is unverifiable, never consistent. Values are not shown
unless --show-values.

Each family compares its policy's audit_sample keys at most (100 when it sets
none), unless --sample says otherwise. A version family is sampled through its
version keys and compared at the current version's data key; data under older
versions is unreachable and never counts. SCAN visits at most --scan-budget
keys per family, so a family with few keys in a big cache costs a bounded
scan; the report notes a sample the budget cut short or found empty.

--heal enqueues, on the family's class queue, the deletion of the
confirmed-stale keys, or for a version family the bump of their entities'
versions: an invalidation like any other (a worker must serve the queue).

Exit codes: 0 nothing inconsistent, 1 inconsistent keys found (or a failure),
2 usage error (flags, policy, a DSN that does not parse or that the server
refuses), 3 Redis or PostgreSQL unreachable. See README "Audits".`,
		Example: `  INVALIDATOR_AUDIT_DSN=postgres://auditor@db:5432/shop invalidator audit --policy policy.yaml
  invalidator audit --policy policy.yaml --family product --sample 1000 --json
  invalidator audit --policy policy.yaml --heal`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd, a) },
	}
	f := cmd.Flags()
	f.StringVar(&o.dsn, "source-dsn", "", "PostgreSQL DSN the audit queries read, postgres://user@host:5432/db or key=value form (env "+envAuditDSN+"; put a password there, not on the command line)")
	f.StringArrayVar(&o.families, "family", nil, "audit this family (repeatable; default: every family with an audit section)")
	f.IntVar(&o.sample, "sample", 0, "keys to compare per family at most (default: the family's audit_sample in the policy, else 100)")
	f.IntVar(&o.scanBudget, "scan-budget", 0, "keys SCAN may visit per family to find the sample (default: max(10 x sample, 100000))")
	f.Float64Var(&o.rate, "rate", 5000, "keys/s the audit may touch in the cache (SCAN counts each key it visits)")
	f.BoolVar(&o.heal, "heal", false, "enqueue the deletion of the keys found stale")
	f.BoolVar(&o.asJSON, "json", false, `print {"families":[{"family","mode","sampled","consistent","inconsistent","in_flight","unverifiable","nines","examples",...}]}`)
	f.BoolVar(&o.showValues, "show-values", false, "show the cached and source values of the examples (they may be personal data)")
	f.StringVar(&o.cacheURL, "cache-redis", "", "cache Redis URL, if not the queue Redis (env "+envCacheRedisURL+")")
	return cmd
}

// checkFamilies returns the families to audit, in name order.
func (o *auditOpts) checkFamilies(p *keyspec.Policy) ([]*keyspec.Family, error) {
	var fams []*keyspec.Family
	if len(o.families) == 0 {
		for _, name := range p.FamilyNames() {
			if f := p.Families[name]; f.Audit != nil {
				fams = append(fams, f)
			}
		}
		if len(fams) == 0 {
			return nil, usagef("no family of the policy declares an audit section; add one (see README \"The policy file\")")
		}
		return fams, nil
	}
	seen := map[string]bool{}
	for _, name := range o.families {
		f, err := p.Family(name)
		if err != nil {
			return nil, err
		}
		if f.Audit == nil {
			return nil, usagef("family %q declares no audit section; add one to the policy, or leave out --family", name)
		}
		if !seen[name] {
			seen[name] = true
			fams = append(fams, f)
		}
	}
	return fams, nil
}

func (o *auditOpts) run(cmd *cobra.Command, a *app) error {
	if cmd.Flags().Changed("sample") && o.sample < 1 {
		return usagef("--sample %d must be at least 1", o.sample)
	}
	if o.scanBudget < 0 {
		return usagef("--scan-budget %d must not be negative", o.scanBudget)
	}
	if !(o.rate > 0) {
		return usagef("--rate %v must be positive", o.rate)
	}
	p, err := a.loadPolicy()
	if err != nil {
		return err
	}
	fams, err := o.checkFamilies(p)
	if err != nil {
		return err
	}
	dsn := a.env(o.dsn, envAuditDSN, "")
	if dsn == "" {
		return usagef("no PostgreSQL DSN: set --source-dsn or %s", envAuditDSN)
	}
	ctx := cmd.Context()
	pool, err := a.openOutboxDB(ctx, dsn)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			// The server refused the settings (password, database).
			return &usageError{err}
		}
		return err
	}
	defer pool.Close()
	cache, err := a.cacheRedis(ctx, o.cacheURL)
	if err != nil {
		return err
	}
	defer cache.Close()
	// One auditor per sample size: the families run one after the other,
	// so --rate still caps the whole audit.
	auditors := map[int]*audit.Auditor{}
	res := auditResult{Families: []audit.Report{}}
	for _, f := range fams {
		sample := o.sample
		if sample == 0 {
			sample = f.Audit.Sample // 0, none in the policy: the auditor's default
		}
		auditor, ok := auditors[sample]
		if !ok {
			auditor, err = audit.New(cache, audit.Config{Sample: sample, ScanBudget: o.scanBudget, Rate: o.rate,
				ShowValues: o.showValues, Logger: a.log})
			if err != nil {
				return &usageError{err}
			}
			auditors[sample] = auditor
		}
		c, err := audit.PolicyCheck(f, pool)
		if err != nil {
			return err
		}
		rep, err := auditor.Audit(ctx, c)
		if err != nil {
			return err
		}
		res.Families = append(res.Families, rep)
	}
	if o.heal {
		n, err := o.healStale(cmd, a, p, res.Families)
		if err != nil {
			return err
		}
		res.Healed = &n
	}
	out := cmd.OutOrStdout()
	if o.asJSON {
		if err := json.NewEncoder(out).Encode(res); err != nil {
			return err
		}
	} else {
		printAudit(out, res)
	}
	var bad []string
	total := 0
	for _, r := range res.Families {
		if r.Unverifiable > 0 {
			msg := ""
			for _, ex := range r.Examples {
				if ex.Error != "" {
					msg = ": " + ex.Error
					break
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "invalidator: audit: family %s: %d keys unverifiable%s\n", r.Family, r.Unverifiable, msg)
		}
		if r.Inconsistent > 0 {
			total += r.Inconsistent
			bad = append(bad, fmt.Sprintf("%s %d", r.Family, r.Inconsistent))
		}
	}
	if total > 0 {
		return fmt.Errorf("audit: %d inconsistent keys (%s)", total, strings.Join(bad, ", "))
	}
	return nil
}

// healStale enqueues the deletion of every confirmed-stale key on its
// family's class queue, with the class's retry budget and timeout, or for
// a version family the bump of each stale entity's version (deleting the
// data key would do too, but a bump is how the policy invalidates it), and
// returns how many keys it healed.
func (o *auditOpts) healStale(cmd *cobra.Command, a *app, p *keyspec.Policy, reps []audit.Report) (int, error) {
	n := 0
	for _, r := range reps {
		n += len(r.Stale)
	}
	if n == 0 {
		return 0, nil
	}
	ctx := cmd.Context()
	rdb, err := a.queueRedis(ctx)
	if err != nil {
		return 0, err
	}
	defer rdb.Close()
	c, err := enqueue.New(rdb, enqueue.Config{Policy: p})
	if err != nil {
		return 0, err
	}
	healed := 0
	for _, r := range reps {
		if len(r.Stale) == 0 {
			continue
		}
		f := p.Families[r.Family]
		cl := p.ClassOf(f)
		q := c.With(enqueue.Queue(cl.Queue), enqueue.MaxRetry(cl.MaxRetry), enqueue.Timeout(cl.Timeout))
		if f.Strategy == keyspec.StrategyVersion {
			for _, params := range r.StaleParams {
				if _, err := q.BumpVersion(ctx, r.Family, params); err != nil {
					return healed, fmt.Errorf("heal family %s: %w (%d keys enqueued before)", r.Family, err, healed)
				}
				healed++
			}
			continue
		}
		if _, err := q.DeleteKeys(ctx, r.Stale...); err != nil {
			return healed, fmt.Errorf("heal family %s: %w (%d keys enqueued before)", r.Family, err, healed)
		}
		healed += len(r.Stale)
	}
	return healed, nil
}

// printAudit prints the per-family table, then the examples' values when
// they were asked for.
func printAudit(out io.Writer, res auditResult) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FAMILY\tMODE\tSAMPLED\tCONSISTENT\tINCONSISTENT\tIN FLIGHT\tUNVERIFIABLE\tNINES\tEXAMPLES")
	for _, r := range res.Families {
		nines := "-"
		if r.Nines != nil {
			nines = fmt.Sprintf("%.2f", *r.Nines)
			if r.NinesAtLeast {
				nines = ">=" + nines
			}
		}
		var exs []string
		for _, ex := range r.Examples {
			exs = append(exs, fmt.Sprintf("%s (%s)", ex.Key, ex.Outcome))
		}
		if r.Note != "" {
			exs = append(exs, r.Note)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Family, r.Mode, r.Sampled, r.Consistent,
			r.Inconsistent, r.InFlight, r.Unverifiable, nines, strings.Join(exs, ", "))
	}
	_ = tw.Flush()
	for _, r := range res.Families {
		for _, ex := range r.Examples {
			if ex.Cached != nil || ex.Source != nil {
				fmt.Fprintf(out, "%s %s:\n  cached: %s\n  source: %s\n", r.Family, ex.Key, deref(ex.Cached), deref(ex.Source))
			}
		}
	}
	if res.Healed != nil {
		fmt.Fprintf(out, "healed: enqueued the invalidation of %d stale keys\n", *res.Healed)
	}
}

func deref(s *string) string {
	if s == nil {
		return "(none)"
	}
	return *s
}
