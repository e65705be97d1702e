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
		RunE: o.run(a, func(ctx context.Context, e bench.Env) (*bench.Result, error) {
			return bench.Lag(ctx, e, lag)
		}),
	}
	lagCmd.Flags().IntVar(&lag.Rate, "rate", 1000, "invalidations per second")
	lagCmd.Flags().DurationVar(&lag.Duration, "duration", 10*time.Second, "how long to send")

	var tp bench.ThroughputOptions
	tpCmd := &cobra.Command{
		Use:     "throughput",
		Short:   "Keys deleted per second with concurrent producers",
		Example: "  invalidator bench throughput --producers 32 --keys-per-call 100\n  invalidator bench throughput --producers 256 --coalesce 1ms",
		Args:    noArgs,
		RunE: o.run(a, func(ctx context.Context, e bench.Env) (*bench.Result, error) {
			return bench.Throughput(ctx, e, tp)
		}),
	}
	tpCmd.Flags().IntVar(&tp.Producers, "producers", 32, "concurrent DeleteKeys callers")
	tpCmd.Flags().IntVar(&tp.KeysPerCall, "keys-per-call", 1, "keys in each DeleteKeys call")
	tpCmd.Flags().IntVar(&tp.Keys, "keys", 200000, "keys to delete in all")
	tpCmd.Flags().DurationVar(&tp.Coalesce, "coalesce", 0, "producer coalescing window, e.g. 1ms (0: off)")

	var fam bench.FamilyOptions
	famCmd := &cobra.Command{
		Use:     "family",
		Short:   "A family pattern delete inside a larger keyspace",
		Example: "  invalidator bench family --family-size 100000 --keyspace 1000000",
		Args:    noArgs,
		RunE: o.run(a, func(ctx context.Context, e bench.Env) (*bench.Result, error) {
			return bench.Family(ctx, e, fam)
		}),
	}
	famCmd.Flags().IntVar(&fam.FamilySize, "family-size", 100000, "keys in the family")
	famCmd.Flags().IntVar(&fam.Keyspace, "keyspace", 1000000, "keys in the database in all")

	cmd.AddCommand(lagCmd, tpCmd, famCmd)
	return group(cmd)
}

func (o *benchOpts) run(a *app, scenario func(context.Context, bench.Env) (*bench.Result, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		if o.workers < 0 {
			return usagef("--workers must not be negative, got %d", o.workers)
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
