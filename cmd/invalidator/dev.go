package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/dashboard"
	"github.com/invalidator/invalidator/cmd/invalidator/internal/devstack"
	"github.com/invalidator/invalidator/cmd/invalidator/internal/sim"
	"github.com/invalidator/invalidator/internal/health"
	"github.com/invalidator/invalidator/internal/redisconn"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

// Default addresses of the dev stack; a taken port falls back to a free one.
const (
	defaultDevDashboardAddr = "127.0.0.1:8080"
	defaultDevMetricsAddr   = "127.0.0.1:9464"
	defaultDevPolicy        = "examples/policy.yaml"
)

type devOpts struct {
	workload      bool
	duration      time.Duration
	dashboardAddr string
	metricsAddr   string
	writers       int
	readers       int
	writeRate     float64
	lagBound      time.Duration
	asJSON        bool
	sourceDSN     string
	auditEvery    time.Duration
	auditRecheck  time.Duration
	dropInvals    float64
	redisPort     int
}

func (o *devOpts) validate() error {
	switch {
	case o.duration < 0:
		return usagef("--duration must be 0 (run until Ctrl-C) or more, got %s", o.duration)
	case o.writers < 1:
		return usagef("--writers must be at least 1, got %d", o.writers)
	case o.readers < 1:
		return usagef("--readers must be at least 1, got %d", o.readers)
	case !(o.writeRate > 0) || math.IsInf(o.writeRate, 0):
		return usagef("--write-rate must be a number of writes/s above 0, got %g", o.writeRate)
	case o.lagBound <= 0:
		return usagef("--lag-bound must be above 0, got %s", o.lagBound)
	case o.auditEvery < 0:
		return usagef("--audit-every must be 0 (no audit) or more, got %s", o.auditEvery)
	case o.auditRecheck < 0:
		return usagef("--audit-recheck must be 0 (the lag bound) or more, got %s", o.auditRecheck)
	case !(o.dropInvals >= 0 && o.dropInvals <= 1):
		return usagef("--drop-invalidations must be a fraction from 0 to 1, got %g", o.dropInvals)
	case o.dropInvals > 0 && !o.workload:
		return usagef("--drop-invalidations needs --workload: it is the simulated application that forgets")
	case o.dropInvals > 0 && o.sourceDSN != "":
		return usagef("--drop-invalidations works without --source-dsn only: the outbox commits the invalidation with the write, so it cannot be forgotten")
	case o.asJSON && !o.workload:
		return usagef("--json prints the workload's summary: it needs --workload")
	case o.redisPort < 0 || o.redisPort > 65535:
		return usagef("--redis-port must be a TCP port from 1 to 65535 (0: a free port), got %d", o.redisPort)
	case o.sourceDSN != "" && !o.workload:
		return usagef("--source-dsn needs --workload: it is where the simulated application keeps its rows")
	}
	return nil
}

func newDevCmd(a *app) *cobra.Command {
	o := &devOpts{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole stack locally: Redis, a worker, the dashboard, metrics and a demo workload",
		Long: `Run everything in one process, to see invalidator work before installing
anything: an embedded Redis (in memory; or --redis URL for a real one), a
worker on the policy (default examples/policy.yaml), the asynqmon dashboard
and the metrics endpoint. Their addresses are printed first.

With --workload, a simulated application runs on the policy's events:
writers update an in-memory source of truth and publish product.updated,
price.changed and user.updated; readers read through cacheaside. One status
line a second shows writes/s, invalidations/s, the lag (from the worker's
histogram: "≤" a bucket bound), the hit rate, stale reads and dead letters.

With --source-dsn the workload keeps its rows in PostgreSQL and publishes
each write's event through the transactional outbox, in the write's own
transaction; a relay in this process moves the rows to the queue (the run
migrates an outbox table of its own and drops it at the end, with its rows).

The workload is audited every --audit-every (package audit, its source of
truth registered as the audit's source): sampled cached values are compared
with the source and re-checked after --audit-recheck (default: --lag-bound,
the same bound the stale reads use); the status line shows
the audits' totals. --drop-invalidations FRACTION makes the application skip
that fraction of its invalidations (the write commits, the publish does not),
like a write path that lacks one: the audit finds what it leaves cached.

--duration ends the run with a summary (Ctrl-C does too). The exit code is 1
if any read was stale, the thing invalidator exists to prevent, or if an
audit found an inconsistent key (with --drop-invalidations: the bug shown).`,
		Example: `  invalidator dev --workload --duration 20s     # what 'make demo' runs
  invalidator dev --redis-port 6390               # the stack only, its Redis on a fixed port: enqueue from another shell
  invalidator dev --redis redis://127.0.0.1:6379 --workload
  invalidator dev --workload --source-dsn postgres://postgres@127.0.0.1:5432/dev
  invalidator dev --workload --duration 20s --drop-invalidations 0.02   # a write path that forgets: the audit finds it`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return a.runDev(cmd, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.workload, "workload", false, "run the simulated application")
	f.DurationVar(&o.duration, "duration", 0, "stop after this long and print a summary (0: until Ctrl-C)")
	f.StringVar(&o.dashboardAddr, "dashboard-addr", defaultDevDashboardAddr, "loopback address of the dashboard (a free port if taken)")
	f.StringVar(&o.metricsAddr, "metrics-addr", defaultDevMetricsAddr, "loopback address of /metrics, /healthz, /readyz (a free port if taken)")
	f.IntVar(&o.writers, "writers", 4, "workload writers")
	f.IntVar(&o.readers, "readers", 16, "workload readers")
	f.Float64Var(&o.writeRate, "write-rate", 50, "workload writes per second")
	f.DurationVar(&o.lagBound, "lag-bound", time.Second, "a read counts as stale when it returns data older than a write completed this long or more before it began")
	f.BoolVar(&o.asJSON, "json", false, "print the final summary as one JSON object on stdout; the addresses and status lines go to stderr")
	f.IntVar(&o.redisPort, "redis-port", 0, "port of the embedded Redis on 127.0.0.1 (0: a free port); not with --redis")
	f.StringVar(&o.sourceDSN, "source-dsn", "", "with --workload: keep the rows in this PostgreSQL and publish through the outbox (env "+envDevDSN+")")
	f.DurationVar(&o.auditEvery, "audit-every", 3*time.Second, "with --workload: audit the cache against the source this often (0: no audit)")
	f.DurationVar(&o.auditRecheck, "audit-recheck", 0, "how long a difference must last for the audit to count it; keep it above the invalidation lag (0: --lag-bound)")
	f.Float64Var(&o.dropInvals, "drop-invalidations", 0, "with --workload: the fraction (0 to 1) of writes whose invalidation the application forgets")
	return cmd
}

// envDevDSN is the environment fallback of dev --source-dsn; a DSN may
// hold a password, which stays off the command line this way.
const envDevDSN = "INVALIDATOR_DEV_DSN"

// openDevDB connects to the workload's PostgreSQL. The DSN, which may hold
// a password, never appears in errors.
func openDevDB(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, usagef("--source-dsn does not parse; use postgres://user@host:5432/db or key=value form")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		return nil, pgConnectError(fmt.Errorf("connect to PostgreSQL at %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err))
	}
	return pool, nil
}

func (a *app) runDev(cmd *cobra.Command, o *devOpts) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	// What --json prints on stdout is one JSON document; what a person
	// reads while it runs goes to stderr then.
	say := out
	if o.asJSON {
		say = cmd.ErrOrStderr()
	}
	var db *pgxpool.Pool
	if dsn := a.env(o.sourceDSN, envDevDSN, ""); dsn != "" && o.workload {
		var err error
		if db, err = openDevDB(ctx, dsn); err != nil {
			return err
		}
		defer db.Close()
	}
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	policy, err := a.devPolicy()
	if err != nil {
		return err
	}

	var rdb redis.UniversalClient
	redisDesc, redisURL := "", ""
	if a.redisURL != "" || a.getenv(envRedisURL) != "" {
		if o.redisPort != 0 {
			return usagef("--redis-port pins the embedded Redis; with --redis there is none")
		}
		if rdb, err = a.queueRedis(ctx); err != nil {
			return err
		}
		// The URL may hold a password: shown redacted, so the hint
		// below names the server, and the user adds the password.
		redisURL = redisconn.Redact(a.env(a.redisURL, envRedisURL, defaultRedisURL))
		redisDesc = redisURL + " (of --redis)"
	} else {
		emb, err := devstack.StartEmbeddedOn(o.redisPort)
		if err != nil {
			return err
		}
		defer emb.Close()
		rdb = emb.Client()
		redisURL = emb.URL()
		redisDesc = emb.URL() + " (embedded, in memory; try: invalidator queues --redis " + emb.URL() + ")"
	}
	defer rdb.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := worker.NewMetrics(reg)
	if err != nil {
		return err
	}
	workerPolicy := policy
	if o.workload {
		workerPolicy = withoutSecondDeletes(policy)
	}

	sctx, stopServers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServers()
	dash, err := dashboard.New(dashboard.Config{Redis: rdb, Addr: o.dashboardAddr, Logger: a.log})
	if err != nil {
		return &usageError{err}
	}
	dashLn, err := listenOrFree(o.dashboardAddr)
	if err != nil {
		return err
	}
	metricsLn, err := listenOrFree(o.metricsAddr)
	if err != nil {
		_ = dashLn.Close()
		return err
	}
	dashDone := make(chan error, 1)
	go func() { dashDone <- dashboard.Serve(sctx, dashLn, dash, a.log) }()
	bound, waitMetrics := serveMetricsOn(sctx, metricsLn, reg, health.PingAll(map[string]redis.UniversalClient{"queue Redis": rdb, "cache Redis": rdb}), a.log)

	fmt.Fprintf(say, "invalidator dev\n  redis      %s\n  policy     %s (%d families, %d events)\n  dashboard  %s\n  metrics    http://%s/metrics  (health: /healthz, /readyz)\n",
		redisDesc, policy.Source, len(policy.Families), len(policy.Events), dashboard.URL(dashLn.Addr()), bound)
	if !o.workload {
		// The whole command: without --redis it would write to the
		// default Redis, not to this stack's.
		fmt.Fprintf(say, "  no --workload: enqueue from another shell, e.g.\n    invalidator enqueue event product.updated id=7 --redis %s --policy %s\n", redisURL, policy.Source)
	} else {
		fmt.Fprintln(say, "  workload   readers use cacheaside leases; the worker runs without second deletes, so the final check sees the leases alone")
		if db != nil {
			fmt.Fprintln(say, "  source     PostgreSQL of --source-dsn; each write publishes through the outbox in its own transaction, relayed in this process")
		}
	}
	if o.duration == 0 {
		fmt.Fprintln(say, "Ctrl-C stops.")
	}

	// The worker outlives the workload: after the load it drains the
	// queues for the final check.
	wctx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorker()
	stopOnSignal := context.AfterFunc(cmd.Context(), stopWorker) // Ctrl-C stops everything at once
	defer stopOnSignal()
	w, err := sim.StartWorker(wctx, worker.Config{Queue: rdb, Policy: workerPolicy, Logger: a.log.With("subsystem", "worker"), Metrics: metrics})
	if err != nil {
		return err
	}
	// A worker that stops early (it could not start, say) ends the run at
	// once, with its error, instead of leaving a stack that invalidates
	// nothing.
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	workerExited := make(chan struct{}) // closed after stopLoad
	go func() {
		<-w.Done()
		stopLoad()
		close(workerExited)
	}()

	var sum devstack.Summary
	var runErr error
	if o.workload {
		sum, runErr = devstack.RunWorkload(loadCtx, devstack.Config{
			Queue: rdb, Cache: rdb, Policy: policy, Gatherer: reg, Registerer: reg,
			Writers: o.writers, Readers: o.readers, WriteRate: o.writeRate, LagBound: o.lagBound, DB: db,
			AuditEvery: o.auditEvery, AuditRecheck: o.auditRecheck, DropInvalidations: o.dropInvals,
			Logger:    a.log.With("subsystem", "workload"),
			Status:    func(s devstack.Status) { fmt.Fprintln(say, s) },
			Interrupt: cmd.Context(),
		})
	} else {
		<-loadCtx.Done()
	}
	workerErr := w.Stop()
	<-workerExited
	if workerErr == nil && loadCtx.Err() != nil && ctx.Err() == nil {
		workerErr = errors.New("the worker stopped early")
	}
	runErr = errors.Join(runErr, workerErr)
	stopServers()
	runErr = errors.Join(runErr, waitMetrics(), <-dashDone)
	if runErr != nil {
		return runErr
	}
	if !o.workload {
		return nil
	}
	if o.asJSON {
		if err := json.NewEncoder(out).Encode(sum); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "\nsummary: %.0fs, %d writes, %.0f invalidations applied, %d reads (hit rate %.1f%%), lag p50 ≤%.1fms p99 ≤%.1fms, stale reads %d, dead letters %d\n",
			sum.Seconds, sum.Writes, sum.Invalidations, sum.Reads, sum.HitRate*100, sum.LagP50Ms, sum.LagP99Ms, sum.StaleReads, sum.DeadLetters)
		if sum.Drained {
			fmt.Fprintf(out, "after the queues drained: %d rows read back through the cache, %d cached older than the source\n", sum.Checked, sum.StaleCached)
		} else if cmd.Context().Err() != nil {
			fmt.Fprintln(out, "interrupted: the final check was skipped")
		} else {
			fmt.Fprintln(out, "the queues did not drain in time: the final check was skipped")
		}
		if sum.Audit != nil {
			fmt.Fprintf(out, "audit: %d cached values sampled, %d inconsistent (stale after the re-check); %d invalidations dropped on purpose\n",
				sum.Audit.Sampled, sum.Audit.Inconsistent, sum.DroppedInvalidations)
		}
	}
	// A forgotten invalidation also shows as stale reads; the audit's
	// finding comes first, since it is what a real deployment would see.
	if sum.Audit != nil && sum.Audit.Inconsistent > 0 {
		return fmt.Errorf("the audit found %d inconsistent of %d sampled cached values (%d invalidations dropped on purpose); %d stale reads and %d stale cached values",
			sum.Audit.Inconsistent, sum.Audit.Sampled, sum.DroppedInvalidations, sum.StaleReads, sum.StaleCached)
	}
	if sum.StaleReads > 0 || sum.StaleCached > 0 {
		return fmt.Errorf("%d stale reads and %d stale cached values: data older than a completed write was served", sum.StaleReads, sum.StaleCached)
	}
	if sum.WriteErrors+sum.ReadErrors > 0 {
		return fmt.Errorf("%d writes and %d reads failed; see the log above", sum.WriteErrors, sum.ReadErrors)
	}
	return nil
}

// withoutSecondDeletes returns a copy of p whose classes schedule no
// second delete.
func withoutSecondDeletes(p *keyspec.Policy) *keyspec.Policy {
	c := *p
	c.Classes = make(map[string]*keyspec.Class, len(p.Classes))
	for name, cl := range p.Classes {
		cp := *cl
		cp.SecondDelete = 0
		c.Classes[name] = &cp
	}
	return &c
}

// devPolicy is --policy, else examples/policy.yaml when run from a checkout.
func (a *app) devPolicy() (*keyspec.Policy, error) {
	path := a.env(a.policy, envPolicy, "")
	if path == "" {
		if _, err := os.Stat(defaultDevPolicy); err != nil {
			return nil, usagef("no policy: run from the repository root (for %s) or pass --policy FILE", defaultDevPolicy)
		}
		path = defaultDevPolicy
	}
	p, err := keyspec.Load(path)
	if err != nil {
		return nil, &usageError{policyLoadError(err)}
	}
	return p, nil
}

// listenOrFree listens on addr, or on a free port of the same host when
// addr's port is taken. Only loopback hosts are allowed: the dev stack has
// no authentication.
func listenOrFree(addr string) (net.Listener, error) {
	if ok, err := dashboard.IsLoopback(addr); err != nil || !ok {
		return nil, usagef("%s is not a loopback address; the dev stack serves without authentication, so it only listens on 127.0.0.1 or ::1", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	host, _, _ := net.SplitHostPort(addr)
	ln, ferr := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if ferr != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}
