package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/worker"
)

type workerOpts struct {
	cacheURL        string
	concurrency     int
	pollInterval    time.Duration
	shutdownTimeout time.Duration
	retryCheck      time.Duration
	scanCount       int
	familyRate      float64
}

func (o *workerOpts) validate() error {
	switch {
	case o.concurrency < 1:
		return usagef("--concurrency must be at least 1, got %d", o.concurrency)
	case o.pollInterval <= 0:
		return usagef("--poll-interval must be positive, got %s", o.pollInterval)
	case o.retryCheck <= 0:
		return usagef("--retry-check-interval must be positive, got %s", o.retryCheck)
	case o.shutdownTimeout <= 0:
		return usagef("--shutdown-timeout must be positive, got %s", o.shutdownTimeout)
	case o.scanCount < 1:
		return usagef("--scan-count must be at least 1, got %d", o.scanCount)
	case o.familyRate < 0:
		return usagef("--family-rate-limit must not be negative, got %g", o.familyRate)
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
--shutdown-timeout, and hands the rest back to the queue.`,
		Example: `  invalidator worker --redis redis://127.0.0.1:6379 --policy examples/policy.yaml
  invalidator worker --redis redis://queue:6379 --cache-redis redis+cluster://cache-1:6379,cache-2:6379`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			w, err := worker.New(worker.Config{
				Queue:              queue,
				Cache:              cache,
				Policy:             policy,
				Logger:             a.log,
				Concurrency:        o.concurrency,
				PollInterval:       o.pollInterval,
				RetryCheckInterval: o.retryCheck,
				ShutdownTimeout:    o.shutdownTimeout,
				ScanCount:          o.scanCount,
				FamilyRateLimit:    o.familyRate,
			})
			if err != nil {
				return err
			}
			return w.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cacheURL, "cache-redis", "", "cache Redis URL, if not the queue Redis (env "+envCacheRedisURL+")")
	f.IntVar(&o.concurrency, "concurrency", worker.DefaultConcurrency, "tasks processed at once")
	f.DurationVar(&o.pollInterval, "poll-interval", worker.DefaultPollInterval, "wait between polls of idle queues; bounds the lag at low load")
	f.DurationVar(&o.retryCheck, "retry-check-interval", worker.DefaultRetryCheck, "how often due retries go back to their queue")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", worker.DefaultShutdownTimeout, "how long in-flight tasks may finish after a stop signal")
	f.IntVar(&o.scanCount, "scan-count", worker.DefaultScanCount, "COUNT hint of each SCAN in family deletes")
	f.Float64Var(&o.familyRate, "family-rate-limit", 0, "max keys/s deleted by family scans on this worker (0: no limit)")
	return cmd
}
