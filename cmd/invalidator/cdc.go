package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/invalidator/invalidator/cdc"
	"github.com/invalidator/invalidator/internal/health"
	"github.com/invalidator/invalidator/keyspec"
)

// envCDCDSN is read when cdc's --dsn is not given; a DSN may hold a
// password, which an environment file keeps off the command line.
const envCDCDSN = "INVALIDATOR_CDC_DSN"

// cdcFlags name the database, slot and publication; cdc, cdc setup and cdc
// teardown share them.
type cdcFlags struct {
	dsn         string
	slot        string
	publication string
}

func (o *cdcFlags) register(f *pflag.FlagSet) {
	f.StringVar(&o.dsn, "dsn", "", "PostgreSQL DSN of the database whose tables the policy maps, postgres://user@host:5432/db or key=value form (env "+envCDCDSN+"; put a password there, not on the command line)")
	f.StringVar(&o.slot, "slot", cdc.DefaultSlot, "logical replication slot (one per database and reader pair)")
	f.StringVar(&o.publication, "publication", cdc.DefaultPublication, "publication of the policy's tables")
}

// open loads the policy, which must map tables, and connects to the
// database with the exit codes of the outbox commands.
func (o *cdcFlags) open(ctx context.Context, a *app) (*keyspec.Policy, *pgxpool.Pool, error) {
	p, err := a.loadPolicy()
	if err != nil {
		return nil, nil, err
	}
	if len(p.Tables) == 0 {
		return nil, nil, usagef("the policy has no tables section: map at least one table to an event (--policy, README \"Invalidation from the write-ahead log\")")
	}
	dsn := a.env(o.dsn, envCDCDSN, "")
	if dsn == "" {
		return nil, nil, usagef("no PostgreSQL DSN: set --dsn or %s", envCDCDSN)
	}
	db, err := a.openOutboxDB(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	return p, db, nil
}

func (o *cdcFlags) target(p *keyspec.Policy) cdc.Target {
	return cdc.Target{Policy: p, Slot: o.slot, Publication: o.publication}
}

// cdcError gives the reader's refusals the exit code of a configuration
// mistake: each says what to change.
func cdcError(err error) error {
	if errors.Is(err, cdc.ErrWALLevel) || errors.Is(err, cdc.ErrNoReplication) || errors.Is(err, cdc.ErrNotSetUp) ||
		errors.Is(err, cdc.ErrReplicaIdentity) || errors.Is(err, cdc.ErrConfig) {
		return &usageError{err}
	}
	return err
}

type cdcOpts struct {
	cdcFlags
	metricsAddr      string
	maxPending       int
	flushWait        time.Duration
	statusInterval   time.Duration
	statsInterval    time.Duration
	takeoverInterval time.Duration
}

func newCDCCmd(a *app) *cobra.Command {
	o := &cdcOpts{}
	cmd := &cobra.Command{
		Use:   "cdc",
		Short: "Invalidate from PostgreSQL's write-ahead log (logical replication)",
		Long: `Read the row changes of the tables the policy maps (its tables section) from a
PostgreSQL logical replication slot, with the built-in pgoutput plugin, and
enqueue each change's event as enqueue event does. Writes that bypass the
application (migrations, admin SQL, other services, batch jobs) are
invalidated too.

At least once: a position is confirmed to PostgreSQL only after every change
up to it is enqueued, so a reader killed at any point, or a PostgreSQL
restart, replays and never skips. Only committed work arrives, in commit
order; a transaction of any size takes --max-pending events of memory.

One reader per slot: a second cdc on the same slot waits as a standby and
takes over when the first stops, so run two for availability.

Run invalidator cdc setup once first. The role needs the REPLICATION
attribute; the database wal_level=logical.`,
		Example: `  INVALIDATOR_CDC_DSN=postgres://cdc@db:5432/shop invalidator cdc --policy policy.yaml --redis redis://queue:6379 --metrics-addr :9466`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case o.maxPending < 1:
				return usagef("--max-pending must be at least 1, got %d", o.maxPending)
			case o.flushWait <= 0 || o.statusInterval <= 0 || o.statsInterval <= 0 || o.takeoverInterval <= 0:
				return usagef("--flush-wait, --status-interval, --stats-interval and --takeover-interval must be positive")
			}
			ctx := cmd.Context()
			policy, db, err := o.open(ctx, a)
			if err != nil {
				return err
			}
			db.Close() // the connection answered: the reader opens its own
			queue, err := a.queueRedis(ctx)
			if err != nil {
				return err
			}
			defer queue.Close()

			var reg *prometheus.Registry
			var metrics *cdc.Metrics
			addr := a.env(o.metricsAddr, envMetricsAddr, "")
			if addr != "" {
				reg = prometheus.NewRegistry()
				reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
					collectors.NewBuildInfoCollector())
				if metrics, err = cdc.NewMetrics(reg); err != nil {
					return err
				}
			}
			reader, err := cdc.NewReader(cdc.Config{
				DSN: a.env(o.dsn, envCDCDSN, ""), Policy: policy, Queue: queue,
				Slot: o.slot, Publication: o.publication,
				MaxPending: o.maxPending, FlushWait: o.flushWait, StatusInterval: o.statusInterval,
				StatsInterval: o.statsInterval, TakeoverInterval: o.takeoverInterval,
				Logger: a.log, Metrics: metrics,
			})
			if err != nil {
				return cdcError(err)
			}
			mctx, stopMetrics := context.WithCancel(ctx)
			defer stopMetrics()
			var waitMetrics func() error
			if addr != "" {
				checks := append(health.PingAll(map[string]redis.UniversalClient{roleQueue: queue}),
					health.Check{Name: "cdc reader", Probe: reader.Ready})
				bound, wait, err := serveMetrics(mctx, addr, reg, checks, a.log)
				if err != nil {
					return err
				}
				waitMetrics = wait
				a.log.Info("metrics server started", "addr", bound)
				fmt.Fprintf(cmd.ErrOrStderr(), "cdc: metrics on http://%s/metrics, health on /healthz and /readyz\n", bound)
			}
			runErr := cdcError(reader.Run(ctx))
			a.log.Info("cdc reader stopped")
			stopMetrics()
			if waitMetrics != nil {
				runErr = errors.Join(runErr, waitMetrics())
			}
			return runErr
		},
	}
	f := cmd.Flags()
	o.register(f)
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "host:port to serve /metrics, /healthz and /readyz on (env "+envMetricsAddr+"; default off)")
	f.IntVar(&o.maxPending, "max-pending", cdc.DefaultMaxPending, "most events held before they are enqueued; bounds memory whatever the transaction's size")
	f.DurationVar(&o.flushWait, "flush-wait", cdc.DefaultFlushWait, "how long a pause in the stream must last before the events held are enqueued (transactions within it share the enqueue)")
	f.DurationVar(&o.statusInterval, "status-interval", cdc.DefaultStatusInterval, "how often an idle reader confirms its position (keep it under the server's wal_sender_timeout)")
	f.DurationVar(&o.statsInterval, "stats-interval", cdc.DefaultStatsInterval, "how often the slot's retained WAL and lag are sampled for the metrics")
	f.DurationVar(&o.takeoverInterval, "takeover-interval", cdc.DefaultTakeoverInterval, "how often a standby tries the slot another reader holds")
	cmd.AddCommand(newCDCSetupCmd(a), newCDCTeardownCmd(a))
	return cmd
}

func newCDCSetupCmd(a *app) *cobra.Command {
	o := &cdcFlags{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Create the publication of the policy's tables and the replication slot",
		Long: `Create the publication of the tables the policy maps (or add the missing ones
to it) and a persistent logical replication slot (pgoutput), then check what
invalidator cdc needs: wal_level=logical, every table in the publication, and
a REPLICA IDENTITY that covers each table's mapped columns, without which a
delete cannot name its keys. Tables are never altered: when an identity falls
short it prints the ALTER TABLE to run and exits 1. Running it again is safe.

From now on PostgreSQL keeps the WAL the slot has not confirmed: run
invalidator cdc, or drop the slot with invalidator cdc teardown. Watch
invalidator_cdc_slot_retained_wal_bytes (deploy/prometheus-rules.yaml).`,
		Example: `  INVALIDATOR_CDC_DSN=postgres://admin@db:5432/shop invalidator cdc setup --policy policy.yaml`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			policy, db, err := o.open(ctx, a)
			if err != nil {
				return err
			}
			defer db.Close()
			conn, err := db.Acquire(ctx)
			if err != nil {
				return pgConnectError(err)
			}
			defer conn.Release()
			res, err := cdc.Setup(ctx, conn.Conn(), o.target(policy))
			if asJSON {
				if jerr := json.NewEncoder(cmd.OutOrStdout()).Encode(res); jerr != nil {
					return jerr
				}
			} else {
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "publication %s: %s\n", o.publication, map[bool]string{true: "created", false: "exists"}[res.PublicationCreated])
				for _, t := range res.TablesAdded {
					fmt.Fprintf(out, "publication %s: added %s\n", o.publication, t)
				}
				fmt.Fprintf(out, "slot %s: %s\n", o.slot, map[bool]string{true: "created", false: "exists"}[res.SlotCreated])
			}
			if errors.Is(err, cdc.ErrReplicaIdentity) {
				return err // a finding about the tables: exit 1
			}
			if err != nil {
				return cdcError(err)
			}
			if !asJSON {
				fmt.Fprintln(cmd.OutOrStdout(), "ready: run invalidator cdc")
			}
			return nil
		},
	}
	o.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"publication_created":..,"slot_created":..,"tables_added":[..]}`)
	return cmd
}

func newCDCTeardownCmd(a *app) *cobra.Command {
	o := &cdcFlags{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "teardown",
		Short: "Drop the replication slot and the publication",
		Long: `Drop the replication slot (PostgreSQL stops keeping WAL for it) and the
publication. A slot a reader holds is refused: stop every invalidator cdc
first. Changes made after this are not invalidated until setup runs again.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			dsn := a.env(o.dsn, envCDCDSN, "")
			if dsn == "" {
				return usagef("no PostgreSQL DSN: set --dsn or %s", envCDCDSN)
			}
			db, err := a.openOutboxDB(ctx, dsn)
			if err != nil {
				return err
			}
			defer db.Close()
			conn, err := db.Acquire(ctx)
			if err != nil {
				return pgConnectError(err)
			}
			defer conn.Release()
			slot, pub, err := cdc.Teardown(ctx, conn.Conn(), cdc.Target{Slot: o.slot, Publication: o.publication})
			if err != nil {
				return cdcError(err)
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(struct {
					Slot        bool `json:"slot_dropped"`
					Publication bool `json:"publication_dropped"`
				}{slot, pub})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "slot %s: %s\npublication %s: %s\n", o.slot, map[bool]string{true: "dropped", false: "absent"}[slot],
				o.publication, map[bool]string{true: "dropped", false: "absent"}[pub])
			return nil
		},
	}
	o.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"slot_dropped":..,"publication_dropped":..}`)
	return cmd
}
