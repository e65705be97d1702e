package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// Server is a PostgreSQL server of one test's own, for a test that restarts
// it, or that needs settings other than the shared server's (another
// wal_level, say): either would disturb the other tests on the shared one.
type Server struct {
	srv   *server
	runID string
	dbSeq atomic.Uint64
}

// NewServer starts a private server for t, with settings (postgres -c
// name=value) after the shared server's, and stops it at t's cleanup. It
// skips t as NewDB does when PostgreSQL is not installed.
func NewServer(t testing.TB, settings ...string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	srv, err := startServer(ctx, settings...)
	switch {
	case errors.Is(err, errNotInstalled):
		skipOrFail(t, err.Error())
	case err != nil:
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return &Server{srv: srv, runID: newRunID()}
}

// NewDB creates a database on s for t, as the package's NewDB does on the
// shared server.
func (s *Server) NewDB(t testing.TB) *DB {
	t.Helper()
	return newDB(t, s.srv, fmt.Sprintf("t_%s_%d", s.runID, s.dbSeq.Add(1)))
}

// Restart stops the server with a fast shutdown (SIGINT: sessions are ended,
// a checkpoint written) and starts it again on the same port and data, as an
// operator's restart does. Clients see their connections fail, then
// reconnect.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	old := s.srv
	if old.admin != nil {
		old.admin.Close()
	}
	_ = old.cmd.Process.Signal(os.Interrupt)
	select {
	case <-old.exited:
	case <-time.After(stopTimeout):
		_ = old.kill()
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	srv, err := launch(old.bin, old.dir, old.dataDir, old.port, old.owner, old.extra)
	if err == nil {
		if err = srv.waitReady(ctx); err != nil {
			_ = srv.kill()
		}
	}
	if err != nil {
		t.Fatalf("pgtest: restart: %v", err)
	}
	// In place: the databases made so far hold this pointer for their
	// cleanup, which needs the new admin pool.
	*s.srv = *srv
}
