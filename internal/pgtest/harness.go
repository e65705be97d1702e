package pgtest

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
	"time"
)

// active is the harness of the running test binary, set by Run for the
// duration of the tests. It is the package's only mutable global, and
// unavoidable: NewDB(t) has no other way to find the server Run owns.
var active atomic.Pointer[harness]

// harness owns the PostgreSQL server of one test binary. The server starts
// on the first NewDB, so tests that need none pay nothing.
type harness struct {
	runID string        // random; keeps database names unique across binaries
	dbSeq atomic.Uint64 // databases handed out so far

	// Written only inside once.
	once   sync.Once
	srv    *server
	srvErr error
}

// Main runs the tests of a package with a private PostgreSQL on demand and
// returns the exit code for os.Exit:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int { return Run(m.Run) }

// Run is Main for a package that wraps m.Run in another harness too:
//
//	os.Exit(pgtest.Run(func() int { return redistest.Main(m) }))
//
// It calls run, then stops the server if one was started.
func Run(run func() int) int {
	h := &harness{runID: newRunID()}
	if !active.CompareAndSwap(nil, h) {
		panic("pgtest: Main or Run called twice in one test binary")
	}
	defer active.Store(nil)
	code := run()
	if err := h.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// current returns the harness set by Run, failing t if there is none.
func current(t testing.TB) *harness {
	t.Helper()
	h := active.Load()
	if h == nil {
		t.Fatalf("pgtest: Main was not called: add to this package's tests\n" +
			"\tfunc TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }")
	}
	return h
}

// startTimeout bounds initdb plus the server's start.
const startTimeout = 2 * time.Minute

// server returns the running server, starting it on first use. A missing
// installation skips t, or fails it under CI.
func (h *harness) server(t testing.TB) *server {
	t.Helper()
	h.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		h.srv, h.srvErr = startServer(ctx)
	})
	switch {
	case errors.Is(h.srvErr, errNotInstalled):
		skipOrFail(t, h.srvErr.Error())
	case h.srvErr != nil:
		t.Fatalf("pgtest: %v", h.srvErr)
	case h.srv == nil:
		// stop used up the once: a straggler outlived the tests.
		t.Fatal("pgtest: tests already finished")
	}
	return h.srv
}

// skipOrFail skips t, unless CI is set: CI installs PostgreSQL (.ci/run), so
// a missing one there means the tests silently stopped running.
func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatal("pgtest: " + msg + "; CI is set, so this is a failure, not a skip")
	}
	t.Skip("pgtest: " + msg)
}

// stop stops the server, if any. It uses up the once if no test did, so no
// server starts later; a start in progress is waited for and stopped.
func (h *harness) stop() error {
	h.once.Do(func() {})
	if h.srv == nil {
		return nil
	}
	return h.srv.stop()
}

// newRunID returns a short random string identifying this test binary's run.
func newRunID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}
