package redistest

import (
	"context"
	"testing"
)

// Internals exposed to the package's external tests.

var (
	LookRedisServer = lookRedisServer
	SanitizeName    = sanitizeName
	FreePort        = freePort
	SlotRanges      = slotRanges
)

// RequireNoHarness runs the check NewDB makes when Main was not called.
func RequireNoHarness(t testing.TB) { requireHarness(t, nil) }

// TestServer is a bare redis-server started outside any harness.
type TestServer struct{ s *server }

// StartTestServer starts redis-server on ports from pickPort with extra args.
func StartTestServer(pickPort func() (int, error), args ...string) (*TestServer, error) {
	bin, err := lookRedisServer(redisServerBinary)
	if err != nil {
		return nil, err
	}
	s, err := startServer(context.Background(), serverSpec{
		bin:       bin,
		pickPort:  pickPort,
		extraArgs: func(int) []string { return args },
	})
	if err != nil {
		return nil, err
	}
	return &TestServer{s: s}, nil
}

func (ts *TestServer) Addr() string { return ts.s.addr() }
func (ts *TestServer) Port() int    { return ts.s.port }
func (ts *TestServer) PID() int     { return ts.s.pid() }
func (ts *TestServer) Dir() string  { return ts.s.dir }
func (ts *TestServer) Stop() error  { return ts.s.stop() }
