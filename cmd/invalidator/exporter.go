package main

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/queuestats"
	"github.com/invalidator/invalidator/internal/health"
)

// defaultExporterAddr is the exporter's --metrics-addr: loopback, so that
// nothing is exposed until the operator says where.
const defaultExporterAddr = "127.0.0.1:9464"

type exporterOpts struct {
	addr            string
	queues          []string
	refreshInterval time.Duration
	timeout         time.Duration
}

func (o *exporterOpts) validate() error {
	switch {
	case o.refreshInterval < 0:
		return usagef("--refresh-interval must not be negative, got %s", o.refreshInterval)
	case o.timeout <= 0:
		return usagef("--timeout must be positive, got %s", o.timeout)
	}
	// A name mangled on its way in (" q" after a comma and a space, a
	// stray control character) would export zeros for a queue nobody uses,
	// and the backlog alerts of the real one would stay silent.
	for _, q := range o.queues {
		if err := checkText(q); err != nil {
			return usagef("--queues: queue name %s %v", quoteInput(q), err)
		}
	}
	return nil
}

func newExporterCmd(a *app) *cobra.Command {
	o := &exporterOpts{}
	cmd := &cobra.Command{
		Use:   "exporter",
		Short: "Serve the queue metrics of the queue Redis for Prometheus",
		Long: `Serve Prometheus metrics of the asynq queues: tasks pending, active,
scheduled, retrying, archived (the dead letter) and completed per queue, and
the age of the oldest pending task, plus /healthz and /readyz.

Run ONE exporter per queue Redis. Workers export their own counters and
histograms with worker --metrics-addr, but not these gauges: read by every
worker, each scrape would cost Redis once per worker. Scrapes within
--refresh-interval share one read.`,
		Example: `  invalidator exporter --redis redis://queue:6379 --metrics-addr 0.0.0.0:9464
  invalidator exporter --queues invalidator-critical,invalidator-standard`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			addr := a.env(o.addr, envMetricsAddr, defaultExporterAddr)
			ctx := cmd.Context()
			queue, err := a.queueRedis(ctx)
			if err != nil {
				return err
			}
			defer queue.Close()

			interval := o.refreshInterval
			if interval == 0 {
				interval = -1 // queuestats: refresh on every scrape
			}
			qs, err := queuestats.New(queuestats.Config{
				Client: queue, Queues: o.queues, Timeout: o.timeout, MinInterval: interval,
				Logger: a.log.With("subsystem", "queuestats"),
			})
			if err != nil {
				return err
			}
			reg := prometheus.NewRegistry()
			for _, c := range []prometheus.Collector{
				qs,
				collectors.NewGoCollector(),
				collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
				collectors.NewBuildInfoCollector(),
			} {
				if err := reg.Register(c); err != nil {
					return fmt.Errorf("register metrics: %w", err)
				}
			}
			bound, wait, err := serveMetrics(ctx, addr, reg, health.PingAll(map[string]redis.UniversalClient{"queue Redis": queue}), a.log)
			if err != nil {
				return err
			}
			a.log.Info("exporter started", "addr", bound)
			fmt.Fprintf(cmd.OutOrStdout(), "exporter: serving http://%s/metrics, /healthz and /readyz\n", bound)
			return wait()
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "metrics-addr", "", "host:port to serve /metrics, /healthz and /readyz on (env "+envMetricsAddr+"; default "+defaultExporterAddr+")")
	f.StringSliceVar(&o.queues, "queues", nil, "queues to export, comma-separated (default: every queue on the queue Redis)")
	f.DurationVar(&o.refreshInterval, "refresh-interval", queuestats.DefaultMinInterval, "scrapes within this interval share one read of Redis (0: read on every scrape)")
	f.DurationVar(&o.timeout, "timeout", queuestats.DefaultTimeout, "longest a scrape waits for Redis; then invalidator_queue_stats_up is 0")
	return cmd
}
