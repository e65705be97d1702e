package redistest

import (
	"context"
	"net"
	"net/url"
	"os"
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
// start again on the same port, or pause: for code that must notice Redis
// going away, hanging, and coming back (readiness checks, reconnects,
// timeouts). Unlike NewDB's shared server, it is never an external one, holds
// no data across a restart unless started with ServerOptions.AppendOnly, and
// is stopped at test cleanup. Its methods are safe for concurrent use.
type Server struct {
	t    testing.TB
	bin  string
	port int    // fixed for the Server's life
	dir  string // kept across restarts; "" for a fresh one each start
	args []string
	pass string // requirepass; "" for none

	mu     sync.Mutex // guards cur and paused
	cur    *server    // nil while stopped
	paused bool
}

// ServerOptions are the settings of a Server that StartServerWith starts.
type ServerOptions struct {
	// AppendOnly makes the server durable across a Stop (a SIGKILL) and
	// Start: every write is in its append-only file, fsynced before the
	// reply (appendonly yes, appendfsync always), in a directory that the
	// restarted server loads. The directory is removed at test cleanup.
	AppendOnly bool

	// Password makes the server require it of every client (requirepass,
	// for the default user), as a production server does: for code that
	// must report a wrong or missing password. URL and NewClient carry it.
	// It is on the server's command line, so use a test password only.
	Password string
}

// StartServer starts a redis-server on a free loopback port and stops it at
// test cleanup. It needs redis-server on PATH, but not Main.
func StartServer(t testing.TB) *Server {
	t.Helper()
	return StartServerWith(t, ServerOptions{})
}

// StartServerWith is StartServer with options.
func StartServerWith(t testing.TB, opts ServerOptions) *Server {
	t.Helper()
	bin, err := lookRedisServer(redisServerBinary)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	srv := &Server{t: t, bin: bin, pass: opts.Password}
	if opts.AppendOnly {
		if srv.dir, err = os.MkdirTemp("", "redistest-aof-*"); err != nil {
			t.Fatalf("redistest: create redis-server directory: %v", err)
		}
		srv.args = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	// Registered first, so it runs after the server is stopped.
	t.Cleanup(func() {
		if srv.dir != "" {
			_ = os.RemoveAll(srv.dir)
		}
	})
	s, err := startServer(context.Background(), srv.spec(freePort))
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	srv.port, srv.cur = s.port, s
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

func (s *Server) spec(pickPort func() (int, error)) serverSpec {
	return serverSpec{bin: s.bin, pickPort: pickPort, extraArgs: func(int) []string { return s.args }, dir: s.dir, password: s.pass}
}

// Addr is the server's 127.0.0.1:PORT; it stays the same across restarts.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is redis://127.0.0.1:PORT/0, or redis://:PASSWORD@127.0.0.1:PORT/0
// with ServerOptions.Password.
func (s *Server) URL() string {
	u := &url.URL{Scheme: "redis", Host: s.Addr(), Path: "/0"}
	if s.pass != "" {
		u.User = url.UserPassword("", s.pass)
	}
	return u.String()
}

// NewClient returns a client of the server, closed at test cleanup. It
// outlives restarts: go-redis reconnects once the server is back.
func (s *Server) NewClient() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.pass})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server (SIGKILL, even while paused) and waits until its
// port is free. Stopping a stopped server does nothing.
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
	s.cur, s.paused = nil, false
}

// Pause stops the server process (SIGSTOP) without closing anything: clients
// stay connected, new connections are accepted by the kernel, and nothing is
// answered until Resume, as with a server stuck in a long command or a
// frozen VM. Pausing a paused or stopped server does nothing.
func (s *Server) Pause() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || s.paused {
		return
	}
	if err := signalProcess(s.cur.cmd.Process, sigStop); err != nil {
		s.t.Fatalf("redistest: pause redis-server on port %d: %v", s.port, err)
	}
	s.paused = true
}

// Resume continues a paused server (SIGCONT); it answers what queued up
// meanwhile. Resuming a server that is not paused does nothing.
func (s *Server) Resume() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || !s.paused {
		return
	}
	if err := signalProcess(s.cur.cmd.Process, sigCont); err != nil {
		s.t.Fatalf("redistest: resume redis-server on port %d: %v", s.port, err)
	}
	s.paused = false
}

// Start starts the server again on the same port, and waits until it
// answers: empty, or with ServerOptions.AppendOnly, with every write the
// killed server acknowledged. Starting a running server does nothing.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), restartTimeout)
	defer cancel()
	spec := s.spec(func() (int, error) { return s.port, nil })
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
