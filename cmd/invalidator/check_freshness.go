package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/freshness"
	"github.com/invalidator/invalidator/keyspec"
)

// envFreshnessDSN is the environment fallback of --source-dsn; a DSN may
// hold a password, which is better kept off the command line.
const envFreshnessDSN = "INVALIDATOR_FRESHNESS_DSN"

type checkFreshnessOpts struct {
	cacheURL  string
	sourceDSN string
	cfg       freshness.Config
	asJSON    bool
}

func (o *checkFreshnessOpts) validate() error {
	c := o.cfg
	for _, f := range []struct {
		flag string
		v    int
	}{
		{"--writers", c.Writers}, {"--readers", c.Readers}, {"--hot-key-readers", c.HotKeyReaders},
		{"--processes", c.Processes}, {"--rows", c.Rows}, {"--forced-races", c.ForcedRaces},
	} {
		if f.v < 1 {
			return usagef("%s must be at least 1, got %d", f.flag, f.v)
		}
	}
	for _, f := range []struct {
		flag string
		d    time.Duration
	}{
		{"--duration", c.Duration}, {"--lag-bound", c.LagBound}, {"--ttl", c.TTL},
	} {
		if f.d <= 0 {
			return usagef("%s must be positive, got %s", f.flag, keyspec.HumanDuration(f.d))
		}
	}
	for _, f := range []struct {
		flag string
		d    time.Duration
	}{
		{"--write-interval", c.WriteInterval}, {"--read-interval", c.ReadInterval},
		{"--loader-delay", c.LoaderDelay}, {"--worker-delay", c.WorkerDelay},
	} {
		if f.d < 0 {
			return usagef("%s must not be negative, got %s", f.flag, keyspec.HumanDuration(f.d))
		}
	}
	return nil
}

func newCheckFreshnessCmd(a *app) *cobra.Command {
	o := &checkFreshnessOpts{}
	cmd := &cobra.Command{
		Use:   "check-freshness",
		Short: "Prove that cacheaside reads are never stale, next to a plain cache-aside control",
		Long: `Run writers, a real in-process worker and two kinds of readers side by side,
force the race that plain cache-aside loses, and count stale reads.

Writers advance versioned rows in memory and then enqueue the invalidation
of the rows' keys. With --source-dsn the rows live in PostgreSQL and each
write's invalidation goes through the transactional outbox instead: in the
write's own transaction, moved to the queue by a relay running in this
process (the run migrates an outbox table of its own and drops it after). Readers read the same rows through cacheaside (leases) and
through plain GET / load / SET (the control). Every loader sleeps
--loader-delay after reading, and the worker waits --worker-delay per task,
so invalidations land while loads are in flight. --forced-races races are
also driven step by step, so the control is caught in every run.

A read is stale when it returned a value older than a write that completed
--lag-bound or more before the read started. The run passes when cacheaside
served no stale read and the control served some; the herd line shows the
loads of one missing hot key read by --hot-key-readers readers at once.

Keys live under "freshness:<run>:" with --ttl and the tasks on a queue of the
run's own, so it is safe against a live deployment's Redis; the exit code is
1 when the check fails.`,
		Example: `  invalidator check-freshness --redis redis://127.0.0.1:6379 --duration 30s --writers 8 --readers 32
  invalidator check-freshness --redis redis+cluster://10.0.0.1:6379 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			queue, err := a.queueRedis(ctx)
			if err != nil {
				return err
			}
			defer queue.Close()
			cfg := o.cfg
			cfg.Queue, cfg.Cache = queue, queue
			if url := a.env(o.cacheURL, envCacheRedisURL, ""); url != "" {
				cache, err := a.connect(ctx, "cache Redis", url)
				if err != nil {
					return err
				}
				defer cache.Close()
				cfg.Cache = cache
			}
			if dsn := a.env(o.sourceDSN, envFreshnessDSN, ""); dsn != "" {
				pg, err := freshness.OpenPostgres(ctx, dsn)
				if err != nil {
					return pgConnectError(err)
				}
				defer func() {
					if err := pg.Close(context.WithoutCancel(ctx)); err != nil {
						a.log.Warn("check freshness: clean-up failed", "err", err)
					}
				}()
				cfg.Source = pg
			}
			cfg.Logger = a.log
			if !o.asJSON {
				cfg.Progress = cmd.ErrOrStderr()
			}
			rep, err := freshness.Run(ctx, cfg)
			if err != nil {
				return fmt.Errorf("check freshness: %w", err)
			}
			if o.asJSON {
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(rep); err != nil {
					return err
				}
			} else if err := rep.Print(cmd.OutOrStdout()); err != nil {
				return err
			}
			if err := rep.Check(); err != nil {
				return fmt.Errorf("check freshness: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cacheURL, "cache-redis", "", "cache Redis URL, if not the queue Redis (env "+envCacheRedisURL+")")
	f.DurationVar(&o.cfg.Duration, "duration", freshness.DefaultDuration, "how long the random workload runs")
	f.IntVar(&o.cfg.Writers, "writers", freshness.DefaultWriters, "concurrent writers")
	f.IntVar(&o.cfg.Readers, "readers", freshness.DefaultReaders, "concurrent readers of each kind")
	f.IntVar(&o.cfg.HotKeyReaders, "hot-key-readers", freshness.DefaultHotKeyReaders, "readers of each kind in the herd on one hot key")
	f.IntVar(&o.cfg.Processes, "processes", freshness.DefaultProcesses, "cacheaside instances the readers are spread over, each standing for a process")
	f.IntVar(&o.cfg.Rows, "rows", freshness.DefaultRows, "rows of the random workload")
	f.IntVar(&o.cfg.ForcedRaces, "forced-races", freshness.DefaultForcedRaces, "races driven step by step; they prove the checker catches a stale reader")
	f.DurationVar(&o.cfg.WriteInterval, "write-interval", freshness.DefaultWriteInterval, "each writer's pause between writes")
	f.DurationVar(&o.cfg.ReadInterval, "read-interval", freshness.DefaultReadInterval, "each reader's pause between reads")
	f.DurationVar(&o.cfg.LoaderDelay, "loader-delay", freshness.DefaultLoaderDelay, "how long loaders sleep after reading a row")
	f.DurationVar(&o.cfg.WorkerDelay, "worker-delay", freshness.DefaultWorkerDelay, "how long the worker waits before applying each task")
	f.DurationVar(&o.cfg.LagBound, "lag-bound", freshness.DefaultLagBound, "invalidation lag a read may be behind by before it counts as stale")
	f.DurationVar(&o.cfg.TTL, "ttl", freshness.DefaultTTL, "TTL of the cache entries")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON object instead of a report")
	f.StringVar(&o.sourceDSN, "source-dsn", "", "PostgreSQL DSN for the source of truth instead of memory (env "+envFreshnessDSN+"); rows go to table invalidator_freshness_rows, invalidations through an outbox table of the run's own, both removed after the run")
	return cmd
}
