package redistest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// privateDatabases is the private server's --databases: enough that the
	// counter in NewDB wraps around only after 10000 databases, far more than a
	// test binary uses, so no two tests of a run share one.
	privateDatabases = 10000
	// defaultDatabases is assumed when an external server hides CONFIG.
	defaultDatabases = 16
	// commandTimeout bounds the harness's own commands (PING, FLUSHDB, ...).
	commandTimeout = 10 * time.Second
	// acquireTimeout bounds the wait for a free database on an external
	// server, where parallel tests can outnumber its databases.
	acquireTimeout = time.Minute
)

// DB is one isolated logical database for one test.
type DB struct {
	// URL is redis://127.0.0.1:PORT/N, usable by CLI subprocesses. With
	// INVALIDATOR_TEST_REDIS_URL it is that URL with the path set to /N, so it
	// carries the server's password.
	URL string
	// Index is the database number N.
	Index int
	// Client is connected to database N; it is closed at test cleanup.
	Client *redis.Client
}

// NewDB hands the test a fresh, flushed database of its own. Parallel tests
// never share one: the private server has 10000 databases handed out by a
// counter; an external server's databases are leased to one test at a time
// (NewDB waits for a free one). NewDB fails the test with instructions if
// Main was not called from TestMain or redis-server is not installed.
func NewDB(t testing.TB) *DB {
	t.Helper()
	h := current(t)
	sa := h.standaloneTarget(t)
	idx := sa.acquire(t, h)

	opts := *sa.opts
	opts.DB = idx
	if opts.TLSConfig != nil {
		opts.TLSConfig = opts.TLSConfig.Clone()
	}
	c := redis.NewClient(&opts)
	t.Cleanup(func() { _ = c.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	if err := c.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("redistest: flush database %d of %s: %v", idx, sa.redacted, err)
	}
	return &DB{URL: sa.urlFor(idx), Index: idx, Client: c}
}

// Client is NewDB(t).Client as a redis.UniversalClient, for code that takes one.
func Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	return NewDB(t).Client
}

// standalone is the server NewDB's databases live on: the private one or the
// one INVALIDATOR_TEST_REDIS_URL names. It is immutable once built, except
// for the free channel, which is safe for concurrent use.
type standalone struct {
	opts      *redis.Options // connection options; DB is set per database
	base      url.URL        // URL of the server; the path is set per database
	redacted  string         // base without its password, for messages
	databases int            // how many databases the server has
	// free holds the indexes not leased to a running test; nil for the
	// private server, whose counter never repeats an index within a run.
	free chan int
}

// standaloneTarget starts or connects to the standalone server once per run.
func (h *harness) standaloneTarget(t testing.TB) *standalone {
	t.Helper()
	h.standaloneOnce.Do(func() {
		ctx := context.Background()
		if raw := os.Getenv(EnvURL); raw != "" {
			h.standalone, h.standaloneErr = openExternal(ctx, raw)
			return
		}
		h.standalone, h.standaloneErr = h.startStandalone(ctx)
	})
	if h.standaloneErr != nil {
		t.Fatalf("redistest: %v", h.standaloneErr)
	}
	return h.standalone
}

// startStandalone starts the private server.
func (h *harness) startStandalone(ctx context.Context) (*standalone, error) {
	bin, err := lookRedisServer(redisServerBinary)
	if err != nil {
		return nil, err
	}
	s, err := h.start(ctx, serverSpec{
		bin:       bin,
		pickPort:  freePort,
		extraArgs: func(int) []string { return []string{"--databases", strconv.Itoa(privateDatabases)} },
	})
	if err != nil {
		return nil, err
	}
	base := url.URL{Scheme: "redis", Host: s.addr()}
	return &standalone{
		opts:      &redis.Options{Addr: s.addr()},
		base:      base,
		redacted:  base.String(),
		databases: privateDatabases,
	}, nil
}

// openExternal connects to the server named by INVALIDATOR_TEST_REDIS_URL.
func openExternal(ctx context.Context, raw string) (*standalone, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		// Never echo raw: it may hold a password.
		return nil, fmt.Errorf("%s is not a redis:// or rediss:// URL", EnvURL)
	}
	redacted := u.Redacted()
	opts, err := redis.ParseURL(raw)
	if err != nil {
		// url.Parse succeeded, so go-redis complains about the path or an
		// option, never the password.
		return nil, fmt.Errorf("%s=%s: %w", EnvURL, redacted, err)
	}
	// Databases are chosen per test: drop the URL's own choice.
	q := u.Query()
	q.Del("db")
	u.RawQuery = q.Encode()

	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("%s=%s does not answer PING: %w", EnvURL, redacted, err)
	}
	n := defaultDatabases
	if cfg, err := c.ConfigGet(ctx, "databases").Result(); err == nil {
		if v, err := strconv.Atoi(cfg["databases"]); err == nil && v > 0 {
			n = v
		}
	}
	free := make(chan int, n)
	for i := range n {
		free <- i
	}
	return &standalone{opts: opts, base: *u, redacted: redacted, databases: n, free: free}, nil
}

// acquire picks the database index for a new DB.
func (sa *standalone) acquire(t testing.TB, h *harness) int {
	t.Helper()
	if sa.free == nil {
		return int((h.dbSeq.Add(1) - 1) % uint64(sa.databases))
	}
	timer := time.NewTimer(acquireTimeout)
	defer timer.Stop()
	select {
	case idx := <-sa.free:
		t.Cleanup(func() { sa.free <- idx })
		return idx
	case <-timer.C:
		t.Fatalf("redistest: all %d databases of %s stay in use by running tests; "+
			"run fewer tests in parallel (-parallel) or unset %s to use a private server",
			sa.databases, sa.redacted, EnvURL)
		return 0
	}
}

// urlFor returns the URL of database idx.
func (sa *standalone) urlFor(idx int) string {
	u := sa.base
	u.Path, u.RawPath = "/"+strconv.Itoa(idx), ""
	return u.String()
}
