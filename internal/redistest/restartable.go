package redistest

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// restartTimeout bounds a Start: the port the server had may still be held
// for a moment by the process that just exited.
const restartTimeout = 15 * time.Second

// Server is a private redis-server of one test, which the test can stop and
// start again on the same port: for code that must notice Redis going away
// and coming back (readiness checks, reconnects). Unlike NewDB's shared
// server, it is never an external one, holds no data across a restart, and
// is stopped at test cleanup. Its methods are safe for concurrent use.
type Server struct {
	t    testing.TB
	bin  string
	port int // fixed for the Server's life

	mu  sync.Mutex // guards cur
	cur *server    // nil while stopped
}

// StartServer starts a redis-server on a free loopback port and stops it at
// test cleanup. It needs redis-server on PATH, but not Main.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin, err := lookRedisServer(redisServerBinary)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s, err := startServer(context.Background(), serverSpec{bin: bin, pickPort: freePort, extraArgs: noExtraArgs})
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	srv := &Server{t: t, bin: bin, port: s.port, cur: s}
	t.Cleanup(func() {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		if srv.cur != nil {
			if err := srv.cur.stop(); err != nil {
				t.Errorf("redistest: %v", err)
			}
			srv.cur = nil
		}
	})
	return srv
}

func noExtraArgs(int) []string { return nil }

// Addr is the server's 127.0.0.1:PORT; it stays the same across restarts.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is redis://127.0.0.1:PORT/0.
func (s *Server) URL() string {
	return (&url.URL{Scheme: "redis", Host: s.Addr(), Path: "/0"}).String()
}

// NewClient returns a client of the server, closed at test cleanup. It
// outlives restarts: go-redis reconnects once the server is back.
func (s *Server) NewClient() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server and waits until its port is free. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return
	}
	if err := s.cur.stop(); err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	s.cur = nil
}

// Start starts the server again on the same port, empty, and waits until it
// answers. Starting a running server does nothing.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), restartTimeout)
	defer cancel()
	spec := serverSpec{bin: s.bin, pickPort: func() (int, error) { return s.port, nil }, extraArgs: noExtraArgs}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		// startServer retries only a port taken by someone else; a port
		// that is ours again a moment later is worth waiting for.
		cur, err := startServer(ctx, spec)
		if err == nil {
			s.cur = cur
			return
		}
		select {
		case <-ctx.Done():
			s.t.Fatalf("redistest: restart redis-server on port %d: %v", s.port, err)
		case <-tick.C:
		}
	}
}
