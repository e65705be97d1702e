package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/bench"
	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

type benchOpts struct {
	workers      int
	shards       int
	pollInterval time.Duration
	pollOnly     bool
	asJSON       bool
	cpuProfile   string
}

func newBenchCmd(a *app) *cobra.Command {
	o := &benchOpts{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure lag and throughput against a Redis, next to baselines",
		Long: `Run a load scenario against --redis and print its figures next to baselines
measured in the same run: raw pipelined multi-key UNLINK (the physical limit),
one DEL per round trip, and plain asynq with one task per key and default
settings. The lag scenario's baselines are lags at the same rate instead: the
producer deleting each key itself (the floor), and that plain asynq. The
worker runs in this process, or as --workers processes.

Use a throwaway Redis, standalone or a Redis Cluster (redis+cluster://; the
CPU figure then sums the masters): the scenarios write and delete keys under
"bench:<run>:" and use queues named invalidator-bench*, which they delete at
the end. --shards N spreads the bench class over N shard queues.`,
	}
	f := cmd.PersistentFlags()
	f.IntVar(&o.workers, "workers", 0, "run N worker processes instead of one in-process worker")
	f.IntVar(&o.shards, "shards", 1, fmt.Sprintf("split the bench class's queue into N shard queues (1 to %d), as a policy's shards: N does", keyspec.MaxShards))
	f.DurationVar(&o.pollInterval, "poll-interval", 0, "worker poll interval (default: the worker's default)")
	f.BoolVar(&o.pollOnly, "poll-only", false, "workers poll without wake-ups and producers push none (the old mode, for a before/after)")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON object instead of a report")
	f.StringVar(&o.cpuProfile, "cpu-profile", "", "write a CPU profile of this process (producers, in-process worker, baselines) to FILE")

	var lag bench.LagOptions
	lagCmd := &cobra.Command{
		Use:     "lag",
		Short:   "Time from enqueue to key gone at a fixed rate (p50, p90, p99, max)",
		Example: "  invalidator bench lag --rate 1000 --duration 10s",
		Args:    noArgs,
		RunE: o.run(a, func() error {
			switch {
			case lag.Rate < 1:
				return usagef("--rate must be at least 1 invalidation/s, got %d", lag.Rate)
			case lag.Duration <= 0:
				return usagef("--duration must be above 0, got %s", lag.Duration)
			}
			return coalesceArg(&lag.Coalesce)
		}, func(ctx context.Context, e bench.Env) (*bench.Result, error) {
			return bench.Lag(ctx, e, lag)
		}),
	}
	lagCmd.Flags().IntVar(&lag.Rate, "rate", 1000, "invalidations per second (1 or more)")
	lagCmd.Flags().DurationVar(&lag.Duration, "duration", 10*time.Second, "how long to send (above 0)")
	coalesceFlag(lagCmd, &lag.Coalesce)
	lagCmd.Flags().BoolVar(&lag.InlineDelete, "inline-delete", false, "the producer also deletes each key itself before enqueueing it (enqueue.Config.InlineDelete); the lag is then the inline delete's")

	var tp bench.ThroughputOptions
	tpCmd := &cobra.Command{
		Use:     "throughput",
		Short:   "Keys deleted per second with concurrent producers",
		Example: "  invalidator bench throughput --producers 32 --keys-per-call 100\n  invalidator bench throughput --producers 256 --coalesce 1ms",
		Args:    noArgs,
		RunE: o.run(a, func() error {
			switch {
			case tp.Producers < 1:
				return usagef("--producers must be at least 1, got %d", tp.Producers)
			case tp.KeysPerCall < 1:
				return usagef("--keys-per-call must be at least 1, got %d", tp.KeysPerCall)
			case tp.Keys < 1:
				return usagef("--keys must be at least 1, got %d", tp.Keys)
			}
			return coalesceArg(&tp.Coalesce)
		}, func(ctx context.Context, e bench.Env) (*bench.Result, error) {
			return bench.Throughput(ctx, e, tp)
		}),
	}
	tpCmd.Flags().IntVar(&tp.Producers, "producers", 32, "concurrent DeleteKeys callers (1 or more)")
	tpCmd.Flags().IntVar(&tp.KeysPerCall, "keys-per-call", 1, "keys in each DeleteKeys call (1 or more)")
	tpCmd.Flags().IntVar(&tp.Keys, "keys", 200000, "keys to delete in all (1 or more)")
	coalesceFlag(tpCmd, &tp.Coalesce)

	var fam bench.FamilyOptions
	famCmd := &cobra.Command{
		Use:     "family",
		Short:   "A family pattern delete inside a larger keyspace",
		Example: "  invalidator bench family --family-size 100000 --keyspace 1000000",
		Args:    noArgs,
		RunE: o.run(a, func() error {
			switch {
			case fam.FamilySize < 1:
				return usagef("--family-size must be at least 1, got %d", fam.FamilySize)
			case fam.Keyspace < fam.FamilySize:
				return usagef("--keyspace must be at least --family-size (%d): it counts every key, the family's too; got %d", fam.FamilySize, fam.Keyspace)
			}
			return nil
		}, func(ctx context.Context, e bench.Env) (*bench.Result, error) {
			return bench.Family(ctx, e, fam)
		}),
	}
	famCmd.Flags().IntVar(&fam.FamilySize, "family-size", 100000, "keys in the family (1 or more)")
	famCmd.Flags().IntVar(&fam.Keyspace, "keyspace", 1000000, "keys in the database in all, the family's included")

	var ob bench.OutboxOptions
	var dsn string
	obCmd := &cobra.Command{
		Use:   "outbox",
		Short: "What the transactional outbox adds to a transaction, its commit-to-key-gone lag and the relay's throughput",
		Long: `Measure the transactional outbox on a throwaway PostgreSQL (--dsn) and --redis,
in one run:

  cost   the same small UPDATE transaction (a scratch table of the bench's own)
         alone; with one outbox write (outbox.Writer.DeleteKeys of one key)
         the recommended pgx way, begun with outbox.BeginPgx so the write
         rides the COMMIT (added_us_per_tx); with that write as a statement
         of its own (outbox.Pgx(tx), added_us_per_tx_statement); with it
         queued in the UPDATE's pgx.Batch (outbox.PgxBatch,
         added_us_per_tx_batched); and with an enqueue after its commit
         (enqueue.Client.DeleteKeys), at 1 and at 8 goroutines; at 1 the
         variants take turns transaction by transaction, at 8 in rotating
         blocks. It prints µs per transaction, the µs each adds and the
         ratios, and as diagnostics the outbox row without its NOTIFY (what
         the notification costs: PostgreSQL serializes the commits of
         notifying transactions) and a bare SELECT (one round trip, the
         floor under any statement sent alone).
  lag    outbox transactions at --lag-rate with a relay and a worker running:
         commit -> key gone (p50, p90, p99, max). Their write rides the
         COMMIT (outbox.BeginPgx), as the cost's outbox variant. The worker polls
         every --poll-interval (default here 1ms, its fastest sensible
         setting).
  relay  --relay-rows single-key rows pre-filled, then one relay drain:
         invalidations/s.

The bench creates the tables invalidator_bench_<run> and
invalidator_bench_<run>_outbox and drops them at the end.`,
		Example: "  invalidator bench outbox --dsn postgres://postgres@127.0.0.1:5432/bench --redis redis://127.0.0.1:6390\n  invalidator bench outbox --dsn \"$DSN\" --lag-duration 10s --json",
		Args:    noArgs,
		RunE: o.runWithPG(a, &dsn, &ob.DB, func() error {
			switch {
			case ob.Tx < 1:
				return usagef("--tx must be at least 1, got %d", ob.Tx)
			case ob.Rounds < 1:
				return usagef("--rounds must be at least 1, got %d", ob.Rounds)
			case ob.LagRate < 1:
				return usagef("--lag-rate must be at least 1 transaction/s, got %d", ob.LagRate)
			case ob.LagDuration <= 0:
				return usagef("--lag-duration must be above 0, got %s", ob.LagDuration)
			case ob.RelayRows < 1:
				return usagef("--relay-rows must be at least 1, got %d", ob.RelayRows)
			}
			return nil
		}, func(ctx context.Context, e bench.Env) (*bench.Result, error) {
			return bench.Outbox(ctx, e, ob)
		}),
	}
	obf := obCmd.Flags()
	obf.StringVar(&dsn, "dsn", "", "PostgreSQL DSN of a throwaway database (env "+envBenchDSN+"); required")
	obf.IntVar(&ob.Tx, "tx", 3000, "transactions of each variant at each concurrency (1 or more)")
	obf.IntVar(&ob.Rounds, "rounds", 6, "rounds the variants take turns in (1 or more)")
	obf.IntVar(&ob.LagRate, "lag-rate", 1000, "outbox transactions per second of the lag phase")
	obf.DurationVar(&ob.LagDuration, "lag-duration", 5*time.Second, "how long the lag phase sends (above 0)")
	obf.IntVar(&ob.RelayRows, "relay-rows", 50000, "single-key rows the relay drains for its throughput")

	var idle bench.IdleOptions
	idleCmd := &cobra.Command{
		Use:   "idle",
		Short: "CPU of the queue Redis and of N idle worker processes, as % of one core",
		Long: `Start --workers worker processes on three empty queues (like
examples/policy.yaml), let them settle for --warmup, then measure over
--duration the CPU the queue Redis spent (INFO cpu) and the CPU the worker
processes spent (/proc, Linux only), each as a percentage of one core.
Nothing else should use that Redis meanwhile. --poll-only measures the
workers polling without wake-ups, as plain asynq does.`,
		Example: "  invalidator bench idle --workers 64\n  invalidator bench idle --workers 64 --poll-only --json",
		Args:    noArgs,
		RunE: o.run(a, func() error {
			switch {
			case o.workers < 1:
				return usagef("bench idle measures worker processes: --workers must be at least 1, got %d", o.workers)
			case idle.Duration <= 0:
				return usagef("--duration must be above 0, got %s", idle.Duration)
			case idle.Warmup <= 0:
				return usagef("--warmup must be above 0, got %s", idle.Warmup)
			}
			return nil
		}, func(ctx context.Context, e bench.Env) (*bench.Result, error) {
			return bench.Idle(ctx, e, idle)
		}),
	}
	idleCmd.Flags().DurationVar(&idle.Duration, "duration", 10*time.Second, "how long to measure (above 0)")
	idleCmd.Flags().DurationVar(&idle.Warmup, "warmup", 3*time.Second, "how long the workers run before the measurement (above 0)")

	var cd bench.CDCOptions
	var cdcDSN string
	cdcCmd := &cobra.Command{
		Use:   "cdc",
		Short: "invalidator cdc's throughput and commit-to-key-gone lag, next to the outbox's in the same run",
		Long: `Measure invalidator cdc on a throwaway PostgreSQL with wal_level=logical (--dsn,
a role that may create publications and slots) and --redis, then the outbox
on the same servers, in one run:

  cdc throughput  --changes row inserts committed 1000 a transaction while
                  no reader runs, then one reader drains the slot: row
                  changes per second from its start to the last event task
                  on the queue.
  cdc lag         single-row transactions at --lag-rate with a reader and a
                  worker running: commit -> key gone (p50, p90, p99, max).
  outbox          the same lag through an outbox write and its relay, and
                  the relay's drain of --relay-rows rows, as bench outbox
                  measures them.

The bench creates a table, publication and slot named invalidator_bench_<run>
(and the outbox's tables) and drops them at the end.`,
		Example: "  invalidator bench cdc --dsn postgres://postgres@127.0.0.1:5432/bench --redis redis://127.0.0.1:6390",
		Args:    noArgs,
		RunE: o.runWithPG(a, &cdcDSN, &cd.DB, func() error {
			switch {
			case cd.Changes < 1:
				return usagef("--changes must be at least 1, got %d", cd.Changes)
			case cd.LagRate < 1:
				return usagef("--lag-rate must be at least 1 transaction/s, got %d", cd.LagRate)
			case cd.LagDuration <= 0:
				return usagef("--lag-duration must be above 0, got %s", cd.LagDuration)
			case cd.RelayRows < 1:
				return usagef("--relay-rows must be at least 1, got %d", cd.RelayRows)
			}
			cd.DSN = a.env(cdcDSN, envBenchDSN, "")
			return nil
		}, func(ctx context.Context, e bench.Env) (*bench.Result, error) {
			return bench.CDC(ctx, e, cd)
		}),
	}
	cdf := cdcCmd.Flags()
	cdf.StringVar(&cdcDSN, "dsn", "", "PostgreSQL DSN of a throwaway database with wal_level=logical (env "+envBenchDSN+"); required")
	cdf.IntVar(&cd.Changes, "changes", 100000, "row changes the reader drains for its throughput (1 or more)")
	cdf.IntVar(&cd.LagRate, "lag-rate", 1000, "single-row transactions per second of the lag phases")
	cdf.DurationVar(&cd.LagDuration, "lag-duration", 5*time.Second, "how long each lag phase sends (above 0)")
	cdf.IntVar(&cd.RelayRows, "relay-rows", 50000, "single-key rows the outbox relay drains for its throughput")

	cmd.AddCommand(lagCmd, tpCmd, famCmd, obCmd, cdcCmd, idleCmd)
	return group(cmd)
}

// envBenchDSN is the environment fallback of bench outbox --dsn, which keeps
// a password off the command line.
const envBenchDSN = "INVALIDATOR_BENCH_DSN"

// runWithPG is run for a scenario that needs PostgreSQL: it opens *dsn
// into *pool first. The DSN, which may hold a password, never appears in
// errors.
func (o *benchOpts) runWithPG(a *app, dsn *string, pool **pgxpool.Pool, validate func() error, scenario func(context.Context, bench.Env) (*bench.Result, error)) func(*cobra.Command, []string) error {
	return o.run(a, func() error {
		if err := validate(); err != nil {
			return err
		}
		if a.env(*dsn, envBenchDSN, "") == "" {
			return usagef("--dsn is required: the PostgreSQL database the bench may create and drop its tables in")
		}
		return nil
	}, func(ctx context.Context, e bench.Env) (*bench.Result, error) {
		cfg, err := pgxpool.ParseConfig(a.env(*dsn, envBenchDSN, ""))
		if err != nil {
			return nil, &usageError{errors.New("--dsn does not parse; use postgres://user@host:5432/db or key=value form")}
		}
		cfg.MaxConns = 16 // 8 goroutines, the relay, migrations
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		if err == nil {
			err = p.Ping(ctx)
		}
		if err != nil {
			if p != nil {
				p.Close()
			}
			return nil, pgConnectError(fmt.Errorf("connect to PostgreSQL at %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err))
		}
		defer p.Close()
		*pool = p
		return scenario(ctx, e)
	})
}

// run runs a scenario after checking the shared flags and the scenario's
// own (validate).
func (o *benchOpts) run(a *app, validate func() error, scenario func(context.Context, bench.Env) (*bench.Result, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		switch {
		case o.workers < 0:
			return usagef("--workers must be 0 (one in-process worker) or more, got %d", o.workers)
		case o.shards < 1 || o.shards > keyspec.MaxShards:
			return usagef("--shards must be 1 to %d, got %d", keyspec.MaxShards, o.shards)
		}
		// The in-process worker's settings; worker processes check theirs
		// alike.
		if err := validateWorkerFlags(worker.Config{PollInterval: o.pollInterval, PollOnly: o.pollOnly}); err != nil {
			return err
		}
		if err := validate(); err != nil {
			return err
		}
		ctx := cmd.Context()
		rdb, err := a.queueRedis(ctx)
		if err != nil {
			return err
		}
		defer rdb.Close()
		e := bench.Env{Redis: rdb, URL: a.env(a.redisURL, envRedisURL, defaultRedisURL), Workers: o.workers, Shards: o.shards,
			PollInterval: o.pollInterval, PollOnly: o.pollOnly, Progress: cmd.ErrOrStderr()}
		if o.cpuProfile != "" {
			f, err := os.Create(o.cpuProfile)
			if err != nil {
				return fmt.Errorf("--cpu-profile: %w", err)
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return fmt.Errorf("--cpu-profile: %w", err)
			}
			defer pprof.StopCPUProfile()
		}
		res, err := scenario(ctx, e)
		var ue *usageError
		var re *unreachableError
		if errors.As(err, &ue) || errors.As(err, &re) {
			return err
		}
		if err != nil {
			return fmt.Errorf("bench %s: %w", cmd.Name(), err)
		}
		if o.asJSON {
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		}
		return printResult(cmd.OutOrStdout(), res)
	}
}

func printResult(w io.Writer, r *bench.Result) error {
	switch r.Scenario {
	case "outbox":
		return printOutbox(w, r)
	case "idle":
		fmt.Fprintf(w, "scenario    idle (%s)\n", describeParams(r.Params))
		fmt.Fprintf(w, "queue redis %.1f%% of one core\n", *r.RedisCPUPercent)
		fmt.Fprintf(w, "workers     %.1f%% of one core, all %v together\n", *r.WorkersCPUPercent, r.Params["workers"])
		return nil
	case "cdc":
		fmt.Fprintf(w, "scenario    cdc (%s)\n", describeParams(r.Params))
		fmt.Fprintf(w, "cdc         %d row changes, commit to enqueued task: %.0f changes/s (%.2fs)\n", r.Keys, r.CDCChangesPerS, r.Seconds)
		fmt.Fprintf(w, "cdc lag     commit -> key gone at %v tx/s: p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms\n",
			r.Params["lag_rate"], r.LagP50Ms, r.LagP90Ms, r.LagP99Ms, r.LagMaxMs)
		fmt.Fprintf(w, "outbox lag  commit -> key gone at %v tx/s (same run): p50 %.2fms  p99 %.2fms\n", r.Params["lag_rate"], r.OutboxLagP50Ms, r.OutboxLagP99Ms)
		fmt.Fprintf(w, "outbox      relay drain (same run): %.0f rows/s; cdc/relay x%.2f\n", r.RelayInvalidationsPerS, r.Ratios["cdc_vs_outbox_relay"])
		fmt.Fprintf(w, "redis cpu   %.2fs busy during the scenario\n", r.RedisCPUSeconds)
		return nil
	case "lag":
		return printLag(w, r)
	}
	fmt.Fprintf(w, "scenario    %s (%s)\n", r.Scenario, describeParams(r.Params))
	fmt.Fprintf(w, "keys        %d in %.2fs\n", r.Keys, r.Seconds)
	if r.Tasks > 0 {
		fmt.Fprintf(w, "tasks       %d (%.1f keys a task)\n", r.Tasks, float64(r.Keys)/float64(r.Tasks))
	}
	fmt.Fprintf(w, "throughput  %.0f keys/s\n", r.KeysPerSec)
	fmt.Fprintf(w, "redis cpu   %.2fs busy in %.2fs (%.0f%% of one core)\n", r.RedisCPUSeconds, r.Seconds, 100*r.RedisCPUSeconds/r.Seconds)
	if r.Keys > 0 {
		fmt.Fprintf(w, "cpu per key redis %.2fµs", 1e6*r.RedisCPUSeconds/float64(r.Keys))
		if r.ClientCPUSeconds > 0 {
			fmt.Fprintf(w, ", this process %.2fµs", 1e6*r.ClientCPUSeconds/float64(r.Keys))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "baselines (same run):")
	for _, name := range slices.Sorted(maps.Keys(r.Baselines)) {
		fmt.Fprintf(w, "  %-16s %10.0f keys/s   ours/baseline %.2f\n", name, r.Baselines[name], r.Ratios[name])
	}
	return nil
}

// lagBaselineNote says what a lag baseline is, in the report.
func lagBaselineNote(name string) string {
	switch name {
	case bench.BaselineDirectDel:
		return "the producer DELs each key itself: the floor"
	case bench.BaselineNaiveAsynq:
		return "plain asynq, a task per key, default settings (1 s poll)"
	}
	return ""
}

// printLag prints the lag scenario: its percentiles next to the lag
// baselines of the same run, in one table.
func printLag(w io.Writer, r *bench.Result) error {
	params := maps.Clone(r.Params)
	achieved := params["achieved_rate"]
	delete(params, "achieved_rate") // a figure, not a setting
	fmt.Fprintf(w, "scenario    lag (%s)\n", describeParams(params))
	fmt.Fprintf(w, "sent        %d invalidations at %s/s\n", r.Keys, formatParam(achieved))
	fmt.Fprintf(w, "redis cpu   %.2fs busy in %.2fs (%.0f%% of one core)\n", r.RedisCPUSeconds, r.Seconds, 100*r.RedisCPUSeconds/r.Seconds)
	fmt.Fprintf(w, "enqueue     p99 %.3fms per call\n", r.EnqueueP99Ms)
	fmt.Fprintln(w, "lag, from when each invalidation was due to its key gone (ms):")
	fmt.Fprintf(w, "  %-12s %9s %9s %9s %9s\n", "", "p50", "p90", "p99", "max")
	fmt.Fprintf(w, "  %-12s %9.2f %9.2f %9.2f %9.2f\n", "invalidator", r.LagP50Ms, r.LagP90Ms, r.LagP99Ms, r.LagMaxMs)
	if len(r.LagBaselines) > 0 {
		fmt.Fprintf(w, "baselines (same run, same rate, for %v):\n", r.Params["baseline_duration"])
	}
	for _, name := range slices.Sorted(maps.Keys(r.LagBaselines)) {
		b := r.LagBaselines[name]
		fmt.Fprintf(w, "  %-12s %9.2f %9.2f %9.2f %9.2f   %s\n", name, b.P50Ms, b.P90Ms, b.P99Ms, b.MaxMs, lagBaselineNote(name))
	}
	return nil
}

// describeParams renders a scenario's settings as "name value" pairs in
// name order, for a person: "duration 10s, rate 1000, workers 0".
func describeParams(params map[string]any) string {
	parts := make([]string, 0, len(params))
	for _, k := range slices.Sorted(maps.Keys(params)) {
		parts = append(parts, strings.ReplaceAll(k, "_", " ")+" "+formatParam(params[k]))
	}
	return strings.Join(parts, ", ")
}

// formatParam prints a setting: floats without a run of decimals, booleans
// as on/off.
func formatParam(v any) string {
	switch v := v.(type) {
	case float64:
		if v == math.Trunc(v) {
			return strconv.FormatFloat(v, 'f', 0, 64)
		}
		return strconv.FormatFloat(v, 'f', 2, 64)
	case bool:
		if v {
			return "on"
		}
		return "off"
	default:
		return fmt.Sprint(v)
	}
}

// printOutbox prints the outbox scenario: costs per transaction, lag and
// relay throughput.
func printOutbox(w io.Writer, r *bench.Result) error {
	fmt.Fprintf(w, "scenario    outbox (%s)\n", describeParams(r.Params))
	for _, g := range []int{1, 8} {
		us := func(v string) float64 { return r.TxUsPerTx[fmt.Sprintf("%s_%d", v, g)] }
		alone, ob, enq := us(bench.VariantAlone), us(bench.VariantOutbox), us(bench.VariantEnqueueAfterCommit)
		obs, obb := us(bench.VariantOutboxStatement), us(bench.VariantOutboxBatched)
		nn, rt := us(bench.VariantOutboxNoNotify), us(bench.VariantRoundTrip)
		how := "interleaved transaction by transaction"
		if g > 1 {
			how = "interleaved in rotating blocks"
		}
		fmt.Fprintf(w, "tx, %d goroutine(s), µs per transaction (same run, %s):\n", g, how)
		fmt.Fprintf(w, "  alone                 %8.1f µs\n", alone)
		fmt.Fprintf(w, "  outbox write          %8.1f µs   adds %+7.1f µs   x%.2f of alone   (rides the COMMIT: outbox.BeginPgx)\n", ob, ob-alone, ob/alone)
		fmt.Fprintf(w, "  outbox statement      %8.1f µs   adds %+7.1f µs   x%.2f of alone   (its own statement: outbox.Pgx)\n", obs, obs-alone, obs/alone)
		fmt.Fprintf(w, "  outbox write batched  %8.1f µs   adds %+7.1f µs   x%.2f of alone   (in the UPDATE's pgx.Batch)\n", obb, obb-alone, obb/alone)
		fmt.Fprintf(w, "  enqueue after commit  %8.1f µs   adds %+7.1f µs   x%.2f of alone\n", enq, enq-alone, enq/alone)
		fmt.Fprintf(w, "  outbox / enqueue after commit: x%.2f\n", ob/enq)
		fmt.Fprintf(w, "  diagnostic: outbox row without its NOTIFY %8.1f µs   adds %+7.1f µs\n", nn, nn-alone)
		fmt.Fprintf(w, "  diagnostic: one bare round trip (SELECT)  %8.1f µs   adds %+7.1f µs\n", rt, rt-alone)
	}
	if rs, st, bt := r.AddedUsPerTxRounds, r.AddedUsPerTxStatementRounds, r.AddedUsPerTxBatchedRounds; len(rs) > 0 && len(st) > 0 && len(bt) > 0 {
		fmt.Fprintf(w, "added at 1 goroutine per round: outbox write %.0f-%.0f µs, its own statement %.0f-%.0f µs, batched %.0f-%.0f µs\n",
			rs[0], rs[len(rs)-1], st[0], st[len(st)-1], bt[0], bt[len(bt)-1])
	}
	fmt.Fprintf(w, "lag         commit -> key gone at %v tx/s through relay and worker (poll %v): p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms\n",
		r.Params["lag_rate"], r.Params["poll_interval"], r.LagP50Ms, r.LagP90Ms, r.LagP99Ms, r.LagMaxMs)
	fmt.Fprintf(w, "relay       %d single-key rows in %.2fs: %.0f invalidations/s\n", r.Keys, r.Seconds, r.RelayInvalidationsPerS)
	fmt.Fprintf(w, "redis cpu   %.2fs busy during the scenario\n", r.RedisCPUSeconds)
	return nil
}

// coalesceFlag adds --coalesce, the producers' coalescing window, to cmd.
func coalesceFlag(cmd *cobra.Command, d *time.Duration) {
	cmd.Flags().DurationVar(d, "coalesce", enqueue.DefaultCoalesceWindow,
		"producer coalescing window, as enqueue.CoalesceConfig's (0: off, every call its own task)")
}

// coalesceArg checks --coalesce and turns its 0 (off) into the bench
// options' off, which is below 0 (their 0 is enqueue's default).
func coalesceArg(d *time.Duration) error {
	switch {
	case *d < 0:
		return usagef("--coalesce must be 0 (off) or more, got %s", *d)
	case *d == 0:
		*d = -1
	}
	return nil
}
