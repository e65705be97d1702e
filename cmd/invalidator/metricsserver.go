package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/invalidator/invalidator/internal/health"
)

// envMetricsAddr is read when --metrics-addr is not given.
const envMetricsAddr = "INVALIDATOR_METRICS_ADDR"

const (
	// metricsShutdownTimeout bounds the wait for in-flight scrapes on exit.
	metricsShutdownTimeout = 5 * time.Second
	// metricsReadHeaderTimeout drops clients that open a connection and
	// say nothing, so they cannot pile up.
	metricsReadHeaderTimeout = 5 * time.Second
	// metricsMaxInFlight bounds concurrent scrapes; more get 503.
	metricsMaxInFlight = 8
)

// serveMetrics listens on addr and serves, until ctx ends:
//
//	/metrics  reg in the Prometheus text format
//	/healthz  200 while the process runs
//	/readyz   200 if every check passes: health.PingAll for the Redis clients
//	          of the process, plus any other dependency (an outbox relay)
//
// It returns the address actually bound (addr may have port 0) and wait,
// which blocks until the server has shut down after ctx ended and returns
// the error that stopped it, if not ctx.
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, ready []health.Check, log *slog.Logger) (string, func() error, error) {
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("metrics server: listen on %s: %w", addr, err)
	}
	bound, wait := serveMetricsOn(ctx, l, reg, ready, log)
	return bound, wait, nil
}

// serveMetricsOn is serveMetrics on a listener the caller opened; it closes
// it when done.
func serveMetricsOn(ctx context.Context, l net.Listener, reg *prometheus.Registry, ready []health.Check, log *slog.Logger) (string, func() error) {
	log = log.With("subsystem", "metrics")
	hh := health.New(ready, health.WithLogger(log))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelError),
		MaxRequestsInFlight: metricsMaxInFlight,
	})))
	mux.Handle("GET "+health.PathLive, hh)
	mux.Handle("GET "+health.PathReady, hh)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "invalidator: /metrics, /healthz, /readyz")
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: metricsReadHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	stopped := make(chan error, 1)
	go func() {
		var err error
		select {
		case <-ctx.Done():
		case err = <-served: // Serve failed on its own: nothing to shut down
			stopped <- fmt.Errorf("metrics server on %s: %w", l.Addr(), err)
			return
		}
		// ctx is over; the shutdown gets a context of its own.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), metricsShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
			log.Warn("metrics server: shutdown", "err", err)
		}
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			stopped <- fmt.Errorf("metrics server on %s: %w", l.Addr(), err)
			return
		}
		stopped <- nil
	}()
	return l.Addr().String(), func() error { return <-stopped }
}
