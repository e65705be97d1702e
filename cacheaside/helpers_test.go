package cacheaside_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/internal/redistest"
)

// bundle is one test's Redis, Cache and registry.
type bundle struct {
	rdb   redis.UniversalClient
	url   string
	cache *cacheaside.Cache
	reg   *prometheus.Registry
}

// setup gives the test a fresh database and a Cache on it built from cfg
// (whose Redis, Logger and Metrics it sets).
func setup(t *testing.T, cfg cacheaside.Config) *bundle {
	t.Helper()
	db := redistest.NewDB(t)
	b := &bundle{rdb: db.Client, url: db.URL}
	b.cache, b.reg = newCache(t, db.Client, cfg)
	return b
}

// newCache builds a Cache on rdb with metrics on a registry of its own.
func newCache(t *testing.T, rdb redis.UniversalClient, cfg cacheaside.Config) (*cacheaside.Cache, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := cacheaside.NewMetrics(reg)
	require.NoError(t, err)
	cfg.Redis, cfg.Metrics = rdb, m
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := cacheaside.New(cfg)
	require.NoError(t, err)
	return c, reg
}

// metric returns the value of the counter (or the sample count of the
// histogram) called name.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if h := m.GetHistogram(); h != nil {
			return float64(h.GetSampleCount())
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("no metric %q", name)
	return 0
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 10*time.Second, time.Millisecond, "waiting for %s", what)
}

// source is a one-row source of truth whose loader counts its calls.
type source struct {
	val   atomic.Pointer[string]
	calls atomic.Int64
}

func newSource(v string) *source {
	s := &source{}
	s.set(v)
	return s
}

func (s *source) set(v string) { s.val.Store(&v) }

func (s *source) load(context.Context) ([]byte, error) {
	s.calls.Add(1)
	return []byte(*s.val.Load()), nil
}

// gate is a loader that reads the source, then blocks until released: it
// holds a reader between "loaded the old row" and "stores it".
type gate struct {
	src     *source
	loaded  chan string   // receives the value read, once per call
	release chan struct{} // closed to let the calls return
}

func newGate(src *source) *gate {
	return &gate{src: src, loaded: make(chan string, 16), release: make(chan struct{})}
}

func (g *gate) load(ctx context.Context) ([]byte, error) {
	v, err := g.src.load(ctx)
	g.loaded <- string(v)
	<-g.release
	return v, err
}

// get calls c.Get and fails the test on an error.
func get(t *testing.T, c *cacheaside.Cache, key string, load cacheaside.Loader) string {
	t.Helper()
	v, err := c.Get(t.Context(), key, load)
	require.NoError(t, err)
	return string(v)
}

// replyHold is a go-redis hook that holds the reply of one command, once
// armed: the first command match accepts (looking at it after it ran)
// returns to its caller only when release is closed. It stops a read between
// Redis answering and the answer arriving, where an invalidation can slip in.
type replyHold struct {
	match   func(redis.Cmder) bool
	armed   atomic.Bool
	held    chan struct{} // closed when a reply is held
	release chan struct{} // closed by the test to let it go
}

func newReplyHold(match func(redis.Cmder) bool) *replyHold {
	return &replyHold{match: match, held: make(chan struct{}), release: make(chan struct{})}
}

func (h *replyHold) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *replyHold) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if h.armed.Load() && h.match(cmd) && h.armed.CompareAndSwap(true, false) {
			close(h.held)
			<-h.release
		}
		return err
	}
}

func (h *replyHold) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// isScript reports whether cmd runs a script (EVALSHA, or EVAL after
// NOSCRIPT) with nargs arguments after the key.
func isScript(cmd redis.Cmder, nargs int) bool {
	args := cmd.Args()
	name := strings.ToLower(cmd.Name())
	return (name == "evalsha" || name == "eval") && len(args) == 4+nargs
}

// isValueHit matches a raw-key lookup (readOrLease) that found a value.
func isValueHit(cmd redis.Cmder) bool {
	c, ok := cmd.(*redis.Cmd)
	if !ok || !isScript(cmd, 2) {
		return false
	}
	s, _ := c.Val().(string)
	return strings.HasPrefix(s, "v")
}

// isValueStore matches a raw-key store of a value that Redis accepted.
func isValueStore(cmd redis.Cmder) bool {
	c, ok := cmd.(*redis.Cmd)
	if !ok || !isScript(cmd, 3) {
		return false
	}
	enc, _ := cmd.Args()[5].(string)
	n, _ := c.Val().(int64)
	return strings.HasPrefix(enc, "v") && n == 1
}
