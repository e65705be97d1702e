package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultTimeout bounds all of a /readyz request's checks together. It is
// well under the usual 1s probe timeout of orchestrators, and far above a
// healthy Redis's PING.
const DefaultTimeout = 500 * time.Millisecond

// Paths the Handler serves.
const (
	PathLive  = "/healthz"
	PathReady = "/readyz"
)

// Check is one dependency that must answer for the process to be ready.
type Check struct {
	// Name says which dependency this is, by role ("cache Redis"). It is
	// shown in /readyz responses: never put a URL or secret in it.
	Name string
	// Probe returns nil when the dependency is usable. It must return soon
	// after ctx ends.
	Probe func(ctx context.Context) error
}

// Ping checks that c answers PING; on a cluster client, every master must.
func Ping(name string, c redis.UniversalClient) Check {
	return Check{Name: name, Probe: func(ctx context.Context) error {
		if cc, ok := c.(*redis.ClusterClient); ok {
			return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
				return m.Ping(ctx).Err()
			})
		}
		return c.Ping(ctx).Err()
	}}
}

// PingAll returns a Ping check per client, sorted by name so that responses
// list them in a stable order.
func PingAll(clients map[string]redis.UniversalClient) []Check {
	checks := make([]Check, 0, len(clients))
	for name, c := range clients {
		checks = append(checks, Ping(name, c))
	}
	slices.SortFunc(checks, func(a, b Check) int { return strings.Compare(a.Name, b.Name) })
	return checks
}

// Option changes a Handler's defaults.
type Option func(*Handler)

// WithTimeout sets how long /readyz waits for its checks (default
// DefaultTimeout). Values <= 0 are ignored.
func WithTimeout(d time.Duration) Option {
	return func(h *Handler) {
		if d > 0 {
			h.timeout = d
		}
	}
}

// WithLogger sets where failed checks are logged with their full error
// (default: nowhere).
func WithLogger(l *slog.Logger) Option {
	return func(h *Handler) { h.log = l }
}

// Handler serves PathLive and PathReady; any other path is 404. It is safe
// for concurrent use.
type Handler struct {
	checks  []Check
	timeout time.Duration
	log     *slog.Logger // nil: failures are not logged
}

// New returns a Handler for checks. With no checks, /readyz is always 200.
func New(checks []Check, opts ...Option) *Handler {
	h := &Handler{checks: slices.Clone(checks), timeout: DefaultTimeout}
	for _, o := range opts {
		o(h)
	}
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case PathLive:
		writeText(w, http.StatusOK, "ok\n")
	case PathReady:
		h.ready(w, r)
	default:
		http.NotFound(w, r)
	}
}

// ready runs every check at once and reports each.
func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	results := h.Check(r.Context())
	status := http.StatusOK
	var b strings.Builder
	for _, res := range results {
		if res.Err != nil {
			status = http.StatusServiceUnavailable
			fmt.Fprintf(&b, "%s: %s\n", res.Name, summary(res.Err))
			continue
		}
		fmt.Fprintf(&b, "%s: ok\n", res.Name)
	}
	if status == http.StatusOK {
		b.WriteString("ok\n")
	} else {
		b.WriteString("not ready\n")
	}
	writeText(w, status, b.String())
}

// Result is the outcome of one check.
type Result struct {
	Name string
	Err  error // nil when the check passed
}

// Check runs every check concurrently, each bounded by the handler's
// timeout, and returns their results in the handler's order. Failures are
// logged with their full error.
func (h *Handler) Check(ctx context.Context) []Result {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	results := make([]Result, len(h.checks))
	var wg sync.WaitGroup
	for i, c := range h.checks {
		wg.Go(func() {
			results[i] = Result{Name: c.Name, Err: probe(ctx, c, h.timeout)}
		})
	}
	wg.Wait()
	for _, res := range results {
		if res.Err != nil && h.log != nil {
			h.log.Warn("readiness check failed", "check", res.Name, "err", res.Err)
		}
	}
	return results
}

// errTimeout means a probe did not return within the timeout.
var errTimeout = errors.New("timed out")

// probe runs c, and gives up when ctx ends even if the probe does not: a
// probe stuck on a dead connection must not hold the response.
func probe(ctx context.Context, c Check, timeout time.Duration) error {
	done := make(chan error, 1) // buffered: a late probe never blocks
	go func() { done <- c.Probe(ctx) }()
	select {
	case err := <-done:
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("%w after %s: %w", errTimeout, timeout, err)
		}
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w after %s", errTimeout, timeout)
	}
}

// summary is what a response shows of a failed check: how it failed, never
// the error text, which may name hosts.
func summary(err error) string {
	var op *net.OpError
	switch {
	case errors.Is(err, errTimeout):
		return "did not answer within the timeout"
	case errors.As(err, &op):
		return "unreachable (see the process log)"
	}
	return "failed (see the process log)"
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
