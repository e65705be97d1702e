package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/internal/health"
	"github.com/invalidator/invalidator/internal/wake"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/outbox"
	"github.com/invalidator/invalidator/worker"
)

// outboxFlagPrefix names the worker's relay flags: --outbox-dsn and so on.
const outboxFlagPrefix = "outbox-"

type workerOpts struct {
	cacheURL        string
	concurrency     int
	pollInterval    time.Duration
	safetyPoll      time.Duration
	pollOnly        bool
	shutdownTimeout time.Duration
	retryCheck      time.Duration
	scanCount       int
	familyRate      float64
	metricsAddr     string

	heartbeat        time.Duration
	heartbeatTimeout time.Duration
	maxRescues       int
	rescue           bool

	// auditDSN (--audit-source-dsn or env INVALIDATOR_AUDIT_DSN) is the
	// PostgreSQL the scheduled audits read; without it they are off.
	auditDSN  string
	auditRate float64

	// relay runs an outbox relay in the worker when its dsn (--outbox-dsn
	// or env INVALIDATOR_OUTBOX_DSN) is set.
	relay relayFlags
}

// config returns the worker settings the flags give. Zero values are the
// worker's defaults: worker.Config decides them, and what a value may be.
func (o *workerOpts) config() worker.Config {
	return worker.Config{
		Concurrency:        o.concurrency,
		PollInterval:       o.pollInterval,
		SafetyPoll:         o.safetyPoll,
		PollOnly:           o.pollOnly,
		RetryCheckInterval: o.retryCheck,
		ShutdownTimeout:    o.shutdownTimeout,
		ScanCount:          o.scanCount,
		FamilyRateLimit:    o.familyRate,
		HeartbeatInterval:  o.heartbeat,
		HeartbeatTimeout:   o.heartbeatTimeout,
		MaxRescues:         o.maxRescues,
		NoRescue:           !o.rescue,
		AuditRate:          o.auditRate,
	}
}

// workerFlags names the flag of each worker.Config field the worker
// command sets, so that a Validate error names what the user typed.
func workerFlags() map[string]string {
	return map[string]string{
		"Concurrency":        "--concurrency",
		"PollInterval":       "--poll-interval",
		"SafetyPoll":         "--safety-poll",
		"RetryCheckInterval": "--retry-check-interval",
		"ShutdownTimeout":    "--shutdown-timeout",
		"ScanCount":          "--scan-count",
		"FamilyRateLimit":    "--family-rate-limit",
		"HeartbeatInterval":  "--heartbeat-interval",
		"HeartbeatTimeout":   "--heartbeat-timeout",
		"MaxRescues":         "--max-rescues",
		"AuditRate":          "--audit-rate",
	}
}

// validate checks the flags with worker.Config.Validate, before anything
// connects.
func (o *workerOpts) validate() error {
	if err := validateWorkerFlags(o.config()); err != nil {
		return err
	}
	return o.relay.validate(outboxFlagPrefix)
}

// validateWorkerFlags checks cfg, filled from worker flags, with
// worker.Config.Validate, and turns its error into a usage error (exit 2)
// that names flags rather than Config fields.
func validateWorkerFlags(cfg worker.Config) error {
	var ce *worker.ConfigError
	switch err := cfg.Validate(); {
	case errors.As(err, &ce) && ce.Field == "Queue":
		// The settings are fine; the queue Redis is connected later.
	case ce != nil:
		flags := workerFlags()
		flag, ok := flags[ce.Field]
		if !ok {
			return err
		}
		problem := ce.Problem
		for field, f := range flags {
			problem = strings.ReplaceAll(problem, field, f)
		}
		return usagef("%s %s", flag, problem)
	case err != nil:
		return err
	}
	return nil
}

func newWorkerCmd(a *app) *cobra.Command {
	o := &workerOpts{}
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Apply invalidation tasks from the queues to the cache",
		Long: `Run a worker: take invalidation tasks from the queues of the policy's classes
and apply them to the cache Redis. Several workers can run against the same
queues. SIGTERM or Ctrl-C stops taking tasks, lets in-flight ones finish for
--shutdown-timeout, and hands the rest back to the queue.

A worker killed without a shutdown (kill -9, OOM kill, a lost host) stops
sending heartbeats; after --heartbeat-timeout the worker holding the
rescuer role puts its in-flight tasks back to their queue, so they run
again within seconds rather than after asynq's 60-120 s lease recovery.

SIGHUP reloads the --policy file: family modes, templates, events, TTLs and
retry budgets apply to the next task. A file with errors is refused with
them listed (FILE:LINE), and the worker keeps its current policy; so is a
change to the classes' queues or weights, which needs a restart.

--outbox-dsn (or env INVALIDATOR_OUTBOX_DSN) also runs an outbox relay in
this process (see invalidator relay), sharing its metrics and /readyz: one
process for a small deployment. Its --outbox-* flags are the relay's.

--audit-source-dsn (or env INVALIDATOR_AUDIT_DSN) turns on scheduled
audits: each family whose policy sets audit_every (and has an audit section)
is audited against PostgreSQL once per period across the whole fleet, by
whichever worker claims the period first (see invalidator audit). Without it,
this worker runs no audits.`,
		Example: `  invalidator worker --redis redis://127.0.0.1:6379 --policy examples/policy.yaml
  invalidator worker --redis redis://queue:6379 --cache-redis redis+cluster://cache-1:6379,cache-2:6379`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Catch SIGHUP before anything slow (connecting, pinging): its
			// default action ends the process, and a systemctl reload
			// during start-up must not stop the worker. A reload asked for
			// before the worker runs is applied once it does.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			if err := o.validate(); err != nil {
				return err
			}
			policy, err := a.loadPolicy()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			queue, err := a.queueRedis(ctx)
			if err != nil {
				return err
			}
			defer queue.Close()
			cache := queue
			if url := a.env(o.cacheURL, envCacheRedisURL, ""); url != "" {
				if cache, err = a.connect(ctx, "cache Redis", url); err != nil {
					return err
				}
				defer cache.Close()
			}
			var metrics *worker.Metrics
			var waitMetrics func() error
			mctx, stopMetrics := context.WithCancel(ctx)
			defer stopMetrics()
			var reg *prometheus.Registry
			addr := a.env(o.metricsAddr, envMetricsAddr, "")
			if addr != "" {
				reg = prometheus.NewRegistry()
				reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
					collectors.NewBuildInfoCollector())
				if metrics, err = worker.NewMetrics(reg); err != nil {
					return err
				}
			}
			var relay *outbox.Relay
			if dsn := a.env(o.relay.dsn, envOutboxDSN, ""); dsn != "" {
				db, err := a.openOutboxDB(ctx, dsn)
				if err != nil {
					return err
				}
				defer db.Close()
				var mreg prometheus.Registerer // nil, not a nil *Registry: no metrics
				if reg != nil {
					mreg = reg
				}
				if relay, err = a.newRelay(&o.relay, db, queue, mreg); err != nil {
					return err
				}
			}
			if addr != "" {
				ready := health.PingAll(map[string]redis.UniversalClient{"queue Redis": queue, "cache Redis": cache})
				if relay != nil {
					ready = append(ready, relayCheck(relay))
				}
				bound, wait, err := serveMetrics(mctx, addr, reg, ready, a.log)
				if err != nil {
					return err
				}
				waitMetrics = wait
				a.log.Info("metrics server started", "addr", bound)
				fmt.Fprintf(cmd.ErrOrStderr(), "worker: metrics on http://%s/metrics, health on /healthz and /readyz\n", bound)
			}
			var auditDB *pgxpool.Pool
			if dsn := a.env(o.auditDSN, envAuditDSN, ""); dsn != "" {
				if auditDB, err = a.openOutboxDB(ctx, dsn); err != nil {
					return err
				}
				defer auditDB.Close()
			}
			cfg := o.config()
			cfg.Queue, cfg.Cache, cfg.Policy, cfg.Logger, cfg.Metrics = queue, cache, policy, a.log, metrics
			if auditDB != nil {
				// Not a nil *pgxpool.Pool in the interface: no source.
				cfg.AuditSource = auditDB
			}
			w, err := worker.New(cfg)
			if err != nil {
				return err
			}
			stopReload := a.reloadOnHangup(ctx, hup, w)
			defer stopReload()
			var relayDone chan error
			rctx, cancelRelay := context.WithCancel(ctx)
			defer cancelRelay()
			if relay != nil {
				// The relay stops with the worker (ctx), after finishing
				// its round.
				relayDone = make(chan error, 1)
				go func() { relayDone <- relay.Run(rctx) }()
			}
			runErr := w.Run(ctx)
			if relayDone != nil {
				// w.Run also returns on its own failure: stop the relay then.
				cancelRelay()
				runErr = errors.Join(runErr, <-relayDone)
				a.log.Info("outbox relay stopped")
			}
			stopMetrics()
			if waitMetrics != nil {
				runErr = errors.Join(runErr, waitMetrics())
			}
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cacheURL, "cache-redis", "", "cache Redis URL, if not the queue Redis (env "+envCacheRedisURL+")")
	f.IntVar(&o.concurrency, "concurrency", 0, fmt.Sprintf("tasks processed at once (default %d)", worker.DefaultConcurrency))
	f.DurationVar(&o.pollInterval, "poll-interval", 0, fmt.Sprintf("pause before polling the queues again after an empty round that did not wait for a wake-up (every round with --poll-only) (default %s)", worker.DefaultPollInterval))
	f.DurationVar(&o.safetyPoll, "safety-poll", 0, fmt.Sprintf("longest wait of an idle worker for a wake-up before it polls anyway (tasks of producers that do not wake: asynqmon, plain asynq clients); whole seconds, 1s to %s (default %s)", wake.MaxSafetyPoll, wake.DefaultSafetyPoll))
	f.BoolVar(&o.pollOnly, "poll-only", false, "no wake-ups: poll idle queues every --poll-interval, as plain asynq does")
	f.DurationVar(&o.retryCheck, "retry-check-interval", 0, fmt.Sprintf("how often due retries go back to their queue (default %s)", worker.DefaultRetryCheck))
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 0, fmt.Sprintf("how long in-flight tasks may finish after a stop signal (default %s)", worker.DefaultShutdownTimeout))
	f.IntVar(&o.scanCount, "scan-count", 0, fmt.Sprintf("COUNT hint of each SCAN in family deletes (default %d)", worker.DefaultScanCount))
	f.Float64Var(&o.familyRate, "family-rate-limit", 0, "max keys/s deleted by family scans on this worker (0: no limit)")
	f.DurationVar(&o.heartbeat, "heartbeat-interval", 0, fmt.Sprintf("how often this worker writes its heartbeat (its in-flight tasks) and the rescuer looks for dead workers (default %s)", worker.DefaultHeartbeatInterval))
	f.DurationVar(&o.heartbeatTimeout, "heartbeat-timeout", 0, "silence after which a worker counts as dead and its tasks go back to their queue (default 4 × --heartbeat-interval)")
	f.IntVar(&o.maxRescues, "max-rescues", 0, fmt.Sprintf("rescues of one task before it is left to asynq's lease recovery (a task that keeps killing workers) (default %d)", worker.DefaultMaxRescues))
	f.BoolVar(&o.rescue, "rescue", true, "let this worker take the rescuer role (--rescue=false: never; it still sends heartbeats)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "host:port to serve /metrics, /healthz and /readyz on (env "+envMetricsAddr+"; default off)")
	f.StringVar(&o.auditDSN, "audit-source-dsn", "", "PostgreSQL DSN the scheduled audits (policy audit_every) read (env "+envAuditDSN+"; put a password there, not on the command line; default off)")
	f.Float64Var(&o.auditRate, "audit-rate", 0, "max cache keys/s the scheduled audits of this worker touch (0: the auditor's default, 5000)")
	o.relay.register(f, outboxFlagPrefix)
	return cmd
}

// reloadOnHangup reloads the policy file into w on every signal on hup
// until ctx ends or the returned stop is called.
func (a *app) reloadOnHangup(ctx context.Context, hup <-chan os.Signal, w *worker.Worker) (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-hup:
				a.reloadPolicy(w)
			}
		}
	}()
	return func() { close(done) }
}

// reloadPolicy loads the policy file and swaps it into w, or logs why not
// and keeps the old one.
func (a *app) reloadPolicy(w *worker.Worker) {
	path := a.env(a.policy, envPolicy, "")
	if path == "" {
		a.log.Warn("SIGHUP: no policy file to reload; start the worker with --policy FILE")
		return
	}
	p, err := keyspec.Load(path)
	if err != nil {
		var verrs keyspec.ValidationErrors
		if errors.As(err, &verrs) {
			for _, e := range verrs {
				a.log.Error("policy reload: "+e.Error(), "file", path)
			}
		}
		a.log.Error("policy reload refused; the worker keeps its current policy", "file", path, "err", err)
		return
	}
	old := w.Policy()
	if err := w.SetPolicy(p); err != nil {
		a.log.Error("policy reload refused; the worker keeps its current policy", "file", path, "err", err)
		return
	}
	for _, name := range p.FamilyNames() {
		f := p.Families[name]
		if of, ok := old.Families[name]; !ok {
			a.log.Info("policy reload: family added", "family", name, "mode", f.Mode)
		} else if of.Mode != f.Mode {
			a.log.Info("policy reload: family mode changed", "family", name, "from", of.Mode, "to", f.Mode)
		}
	}
	for _, name := range old.FamilyNames() {
		if _, ok := p.Families[name]; !ok {
			a.log.Warn("policy reload: family removed; its queued tasks will go to the dead letter", "family", name)
		}
	}
	// Warnings are left to policy lint: looking for them costs up to
	// seconds, too much for every reload.
	a.log.Info("policy reloaded", "file", path, "families", len(p.Families), "events", len(p.Events))
}
