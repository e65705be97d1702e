package dashboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// shutdownGrace bounds how long Serve waits for requests in flight after ctx
// ends.
const shutdownGrace = 5 * time.Second

// Serve serves h on ln until ctx ends, then shuts down gracefully: it stops
// accepting, lets requests in flight finish (up to 5 s) and returns nil. It
// returns the server's error if serving fails first. ln is closed either way.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler: h,
		// Slow clients must not hold connections open forever.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	if log != nil {
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("dashboard: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	// ctx is already done: shut down on a fresh deadline.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) && serr != nil {
		return fmt.Errorf("dashboard: serve on %s: %w", ln.Addr(), serr)
	}
	if err != nil {
		return fmt.Errorf("dashboard: shutdown: %w", err)
	}
	return nil
}

// URL returns the address a browser should open for a dashboard listening
// on addr (as from net.Listener.Addr): an unspecified host (0.0.0.0, ::) is
// shown as localhost, which reaches it from this machine.
func URL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + RootPath + "/"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + RootPath + "/"
}
