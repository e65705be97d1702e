package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/invalidator/invalidator/internal/health"
	"github.com/invalidator/invalidator/outbox"
)

// relayFlags tune a relay; the relay command and the worker's
// --outbox-dsn share them.
type relayFlags struct {
	outboxFlags
	batchSize     int
	pollInterval  time.Duration
	statsInterval time.Duration
	roundTimeout  time.Duration
}

func (o *relayFlags) register(f *pflag.FlagSet, prefix string) {
	o.outboxFlags.register(f, prefix)
	f.IntVar(&o.batchSize, prefix+"batch-size", outbox.DefaultBatchSize, "most outbox rows one relay round takes (one transaction)")
	f.DurationVar(&o.pollInterval, prefix+"poll-interval", outbox.DefaultPollInterval, "safety poll of an idle relay, in case a NOTIFY was missed or skipped (one indexed query each)")
	f.DurationVar(&o.statsInterval, prefix+"stats-interval", outbox.DefaultStatsInterval, "how often the outbox depth and oldest row age are sampled for the metrics (a count(*) each)")
	f.DurationVar(&o.roundTimeout, prefix+"round-timeout", outbox.DefaultRoundTimeout, "bound on one round (claim, enqueue, commit); a round cut short is rolled back and sent again, and the next rounds take half the rows (growing back after successes)")
}

func (o *relayFlags) validate(prefix string) error {
	switch {
	case o.batchSize < 1:
		return usagef("--%sbatch-size must be at least 1, got %d", prefix, o.batchSize)
	case o.pollInterval <= 0:
		return usagef("--%spoll-interval must be positive, got %s", prefix, o.pollInterval)
	case o.statsInterval <= 0:
		return usagef("--%sstats-interval must be positive, got %s", prefix, o.statsInterval)
	case o.roundTimeout <= 0:
		return usagef("--%sround-timeout must be positive, got %s", prefix, o.roundTimeout)
	}
	if _, err := outbox.Migrations(o.config()); err != nil {
		return &usageError{err}
	}
	return nil
}

// newRelay builds the relay of o on db and queue; reg, when not nil,
// receives its metrics.
func (a *app) newRelay(o *relayFlags, db *pgxpool.Pool, queue redis.UniversalClient, reg prometheus.Registerer) (*outbox.Relay, error) {
	var metrics *outbox.Metrics
	if reg != nil {
		var err error
		if metrics, err = outbox.NewMetrics(reg); err != nil {
			return nil, err
		}
	}
	return outbox.NewRelay(outbox.RelayConfig{
		Outbox:        o.config(),
		DB:            db,
		Queue:         queue,
		BatchSize:     o.batchSize,
		PollInterval:  o.pollInterval,
		StatsInterval: o.statsInterval,
		RoundTimeout:  o.roundTimeout,
		Logger:        a.log,
		Metrics:       metrics,
	})
}

// relayCheck is the /readyz check of a relay.
func relayCheck(r *outbox.Relay) health.Check {
	return health.Check{Name: "outbox relay", Probe: r.Ready}
}

type relayOpts struct {
	relayFlags
	metricsAddr string
	migrate     bool
}

func newRelayCmd(a *app) *cobra.Command {
	o := &relayOpts{}
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Move invalidations from the PostgreSQL outbox to the queues",
		Long: `Run an outbox relay: move the rows that application code wrote into the outbox
table (package outbox, in its own transactions) to the asynq queues of the
queue Redis, and delete them. It is woken by NOTIFY (writers send one at most
every 5ms) and, after a round that moved rows, polls again after 1ms, the
wait doubling per empty round up to --poll-interval, so rows that arrive
without a notification of their own are found.

At least once: a row is deleted only by the transaction that follows its
task's enqueue. A relay killed mid-batch (kill -9) repeats at most that batch;
while the queue Redis is down rows accumulate and drain when it returns.
Several relays, on one host or many, share the table safely (FOR UPDATE
SKIP LOCKED). SIGTERM or Ctrl-C lets the round in flight finish, then exits.

--migrate applies the schema at start. It is off by default: schema changes
are for a deploy step or a DBA (outbox migrate, or outbox migrate --print),
and the relay's role then needs no DDL rights on the database.`,
		Example: `  INVALIDATOR_OUTBOX_DSN=postgres://relay@db:5432/shop invalidator relay --redis redis://queue:6379 --metrics-addr :9465`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(""); err != nil {
				return err
			}
			ctx := cmd.Context()
			db, err := a.connectOutbox(ctx, o.dsn)
			if err != nil {
				return err
			}
			defer db.Close()
			if o.migrate {
				applied, err := outbox.Migrate(ctx, db, o.config())
				if err != nil {
					return err
				}
				a.log.Info("outbox migrated", "applied", applied)
			}
			queue, err := a.queueRedis(ctx)
			if err != nil {
				return err
			}
			defer queue.Close()

			var reg *prometheus.Registry
			var mreg prometheus.Registerer // nil, not a nil *Registry: no metrics
			addr := a.env(o.metricsAddr, envMetricsAddr, "")
			if addr != "" {
				reg = prometheus.NewRegistry()
				reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
					collectors.NewBuildInfoCollector())
				mreg = reg
			}
			relay, err := a.newRelay(&o.relayFlags, db, queue, mreg)
			if err != nil {
				return err
			}
			mctx, stopMetrics := context.WithCancel(ctx)
			defer stopMetrics()
			var waitMetrics func() error
			if addr != "" {
				checks := append(health.PingAll(map[string]redis.UniversalClient{roleQueue: queue}), relayCheck(relay))
				bound, wait, err := serveMetrics(mctx, addr, reg, checks, a.log)
				if err != nil {
					return err
				}
				waitMetrics = wait
				a.log.Info("metrics server started", "addr", bound)
				fmt.Fprintf(cmd.ErrOrStderr(), "relay: metrics on http://%s/metrics, health on /healthz and /readyz\n", bound)
			}
			runErr := relay.Run(ctx)
			a.log.Info("outbox relay stopped")
			stopMetrics()
			if waitMetrics != nil {
				runErr = errors.Join(runErr, waitMetrics())
			}
			return runErr
		},
	}
	f := cmd.Flags()
	o.relayFlags.register(f, "")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "host:port to serve /metrics, /healthz and /readyz on (env "+envMetricsAddr+"; default off)")
	f.BoolVar(&o.migrate, "migrate", false, "apply the outbox schema at start (off: a deploy step or a DBA does it; the relay's role then needs no DDL rights)")
	return cmd
}
