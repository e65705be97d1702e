package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/internal/bench"
)

type benchOpts struct {
	workers      int
	pollInterval time.Duration
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
settings. The worker runs in this process, or as --workers processes.

Use a throwaway standalone Redis: the scenarios write and delete keys under
"bench:<run>:" and use queues named invalidator-bench*.`,
	}
	f := cmd.PersistentFlags()
	f.IntVar(&o.workers, "workers", 0, "run N worker processes instead of one in-process worker")
	f.DurationVar(&o.pollInterval, "poll-interval", 0, "worker poll interval (default: the worker's default)")
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
			return nil
		}, func(ctx context.Context, e bench.Env) (*bench.Result, error) {
			return bench.Lag(ctx, e, lag)
		}),
	}
	lagCmd.Flags().IntVar(&lag.Rate, "rate", 1000, "invalidations per second (1 or more)")
	lagCmd.Flags().DurationVar(&lag.Duration, "duration", 10*time.Second, "how long to send (above 0)")

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
			case tp.Coalesce < 0:
				return usagef("--coalesce must be 0 (off) or more, got %s", tp.Coalesce)
			}
			return nil
		}, func(ctx context.Context, e bench.Env) (*bench.Result, error) {
			return bench.Throughput(ctx, e, tp)
		}),
	}
	tpCmd.Flags().IntVar(&tp.Producers, "producers", 32, "concurrent DeleteKeys callers (1 or more)")
	tpCmd.Flags().IntVar(&tp.KeysPerCall, "keys-per-call", 1, "keys in each DeleteKeys call (1 or more)")
	tpCmd.Flags().IntVar(&tp.Keys, "keys", 200000, "keys to delete in all (1 or more)")
	tpCmd.Flags().DurationVar(&tp.Coalesce, "coalesce", 0, "producer coalescing window, e.g. 1ms (0: off)")

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

	cmd.AddCommand(lagCmd, tpCmd, famCmd)
	return group(cmd)
}

// run runs a scenario after checking the shared flags and the scenario's
// own (validate).
func (o *benchOpts) run(a *app, validate func() error, scenario func(context.Context, bench.Env) (*bench.Result, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		switch {
		case o.workers < 0:
			return usagef("--workers must be 0 (one in-process worker) or more, got %d", o.workers)
		case o.pollInterval < 0:
			return usagef("--poll-interval must be 0 (the worker's default) or more, got %s", o.pollInterval)
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
		e := bench.Env{Redis: rdb, URL: a.env(a.redisURL, envRedisURL, defaultRedisURL), Workers: o.workers,
			PollInterval: o.pollInterval, Progress: cmd.ErrOrStderr()}
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
	fmt.Fprintf(w, "scenario    %s %v\n", r.Scenario, r.Params)
	fmt.Fprintf(w, "keys        %d in %.2fs\n", r.Keys, r.Seconds)
	fmt.Fprintf(w, "throughput  %.0f keys/s\n", r.KeysPerSec)
	fmt.Fprintf(w, "redis cpu   %.2fs busy in %.2fs (%.0f%% of one core)\n", r.RedisCPUSeconds, r.Seconds, 100*r.RedisCPUSeconds/r.Seconds)
	if r.Scenario == "lag" {
		fmt.Fprintf(w, "lag         p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms\n", r.LagP50Ms, r.LagP90Ms, r.LagP99Ms, r.LagMaxMs)
		fmt.Fprintf(w, "enqueue     p99 %.3fms per call\n", r.EnqueueP99Ms)
	}
	fmt.Fprintln(w, "baselines (same run):")
	for _, name := range slices.Sorted(maps.Keys(r.Baselines)) {
		fmt.Fprintf(w, "  %-16s %10.0f keys/s   ours/baseline %.2f\n", name, r.Baselines[name], r.Ratios[name])
	}
	return nil
}
