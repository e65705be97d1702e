package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

// EnvURL names the environment variable that points the tests at an existing
// Redis server instead of a private one. Every database of that server gets
// flushed.
const EnvURL = "INVALIDATOR_TEST_REDIS_URL"

// redisServerBinary is the program the harness starts.
const redisServerBinary = "redis-server"

// active is the harness of the running test binary, set by Main for the
// duration of m.Run. It is the package's only mutable global, and unavoidable:
// NewDB(t) has no other way to find the servers Main owns.
var active atomic.Pointer[harness]

// harness owns every redis-server a test binary starts. Servers start lazily,
// on the first NewDB or Cluster call, so tests that need no Redis pay nothing;
// Main stops them all.
type harness struct {
	runID     string        // random; keeps Prefix unique across test binaries
	prefixSeq atomic.Uint64 // last suffix handed out by Prefix
	dbSeq     atomic.Uint64 // number of databases handed out by NewDB

	// The once/value/error triples are written only inside their Once.
	standaloneOnce sync.Once
	standalone     *standalone
	standaloneErr  error

	clusterOnce sync.Once
	cluster     *cluster
	clusterErr  error

	mu      sync.Mutex
	servers []*server // guarded by mu: every process started, in start order
	stopped bool      // guarded by mu: set by stop; later starts are refused
}

// Main runs the tests of a package with Redis servers on demand and returns
// the exit code for os.Exit. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
//
// A private redis-server starts on a free loopback port at the first NewDB
// (unless INVALIDATOR_TEST_REDIS_URL is set, then that server is used), a
// private cluster at the first Cluster call. Main stops every server it
// started once m.Run returns.
func Main(m *testing.M) int {
	h := &harness{runID: newRunID()}
	if !active.CompareAndSwap(nil, h) {
		panic("redistest: Main called twice in one test binary")
	}
	defer active.Store(nil)
	code := m.Run()
	if err := h.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "redistest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// current returns the harness set by Main, failing t if there is none.
func current(t testing.TB) *harness {
	t.Helper()
	return requireHarness(t, active.Load())
}

// requireHarness fails t with instructions when Main was not called.
func requireHarness(t testing.TB, h *harness) *harness {
	t.Helper()
	if h == nil {
		t.Fatalf("redistest: Main was not called: add to this package's tests\n" +
			"\tfunc TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }")
	}
	return h
}

// start starts a server and records it so that stop can end it.
func (h *harness) start(ctx context.Context, spec serverSpec) (*server, error) {
	s, err := startServer(ctx, spec)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		// A straggling goroutine outlived m.Run: do not leak its server.
		return nil, errors.Join(errors.New("redistest: tests already finished"), s.stop())
	}
	h.servers = append(h.servers, s)
	return s, nil
}

// stop stops every server started so far and refuses new ones.
func (h *harness) stop() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	var errs []error
	for _, s := range h.servers {
		errs = append(errs, s.stop())
	}
	h.servers = nil
	return errors.Join(errs...)
}

// newRunID returns a short random string identifying this test binary's run.
func newRunID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}
