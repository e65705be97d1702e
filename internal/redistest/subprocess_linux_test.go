package redistest_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// These tests run the test binary again, with only TestHelperProcess
// selected, to watch what happens to its servers when it exits or crashes.

// helperModeEnv selects what TestHelperProcess does; unset, it is skipped.
const helperModeEnv = "REDISTEST_HELPER_MODE"

func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperModeEnv)
	if mode == "" {
		t.Skip("runs only as the subprocess of the subprocess tests")
	}
	ctx := t.Context()
	switch mode {
	case "exit":
		reportServer(t, redistest.NewDB(t).Client)
		require.NoError(t, redistest.Cluster(t).ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
			reportServer(t, m)
			return nil
		}))
	case "panic":
		reportServer(t, redistest.NewDB(t).Client)
		panic("helper panics on purpose")
	case "external":
		for range 3 {
			db := redistest.NewDB(t)
			fmt.Printf("redistest-helper db=%d url=%s\n", db.Index, db.URL)
		}
	default:
		t.Fatalf("unknown %s %q", helperModeEnv, mode)
	}
}

// reportServer prints the pid and port of the server c talks to.
func reportServer(t *testing.T, c *redis.Client) {
	info, err := c.Info(t.Context(), "server").Result()
	require.NoError(t, err)
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `:(\d+)`).FindStringSubmatch(info)
		require.NotNil(t, m, "INFO has no %s", name)
		return m[1]
	}
	fmt.Printf("redistest-helper pid=%s port=%s\n", field("process_id"), field("tcp_port"))
}

type startedServer struct{ pid, port int }

// runHelper runs TestHelperProcess in mode with extra environment, and
// returns its output and the servers it reported.
func runHelper(t *testing.T, mode string, env ...string) (string, []startedServer, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	for _, kv := range os.Environ() {
		// The child must start its own servers unless a test says otherwise.
		if !strings.HasPrefix(kv, redistest.EnvURL+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// A crashed helper cannot remove its servers' directories: keep them
	// where the test cleans up.
	cmd.Env = append(cmd.Env, helperModeEnv+"="+mode, "TMPDIR="+t.TempDir())
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	var servers []startedServer
	for _, m := range regexp.MustCompile(`redistest-helper pid=(\d+) port=(\d+)`).FindAllStringSubmatch(string(out), -1) {
		pid, _ := strconv.Atoi(m[1])
		port, _ := strconv.Atoi(m[2])
		servers = append(servers, startedServer{pid: pid, port: port})
	}
	return string(out), servers, err
}

func TestSubprocess_MainStopsEveryServerItStarted(t *testing.T) {
	t.Parallel()
	out, servers, err := runHelper(t, "exit")
	require.NoError(t, err, out)
	require.Len(t, servers, 4, "one standalone and three cluster nodes; output:\n%s", out)
	for _, s := range servers {
		// Main waits for each process to be reaped before it returns.
		require.False(t, serverRunning(s.pid, s.port), "redis-server pid %d port %d outlived the test binary", s.pid, s.port)
	}
}

func TestSubprocess_ServersDieWhenTheTestBinaryPanics(t *testing.T) {
	t.Parallel()
	out, servers, err := runHelper(t, "panic")
	require.Error(t, err, "the helper must crash")
	require.Contains(t, out, "helper panics on purpose")
	require.Len(t, servers, 1, out)
	s := servers[0]
	// Main's cleanup never ran: the kernel's parent-death signal must do
	// it, asynchronously.
	require.Eventually(t, func() bool { return !serverRunning(s.pid, s.port) }, 10*time.Second, 20*time.Millisecond,
		"redis-server pid %d port %d outlived the crashed test binary", s.pid, s.port)
}

func TestSubprocess_ExternalServerLeasesItsDatabases(t *testing.T) {
	t.Parallel()
	srv, err := redistest.StartTestServer(redistest.FreePort, "--databases", "3")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Stop()) })

	out, _, err := runHelper(t, "external", redistest.EnvURL+"=redis://"+srv.Addr()+"/2?db=2&dial_timeout=2s")
	require.NoError(t, err, out)
	lines := regexp.MustCompile(`redistest-helper db=(\d+) url=(\S+)`).FindAllStringSubmatch(out, -1)
	require.Len(t, lines, 3, out)
	seen := map[string]bool{}
	for _, m := range lines {
		require.False(t, seen[m[1]], "database %s handed out twice while in use:\n%s", m[1], out)
		seen[m[1]] = true
		u, err := url.Parse(m[2])
		require.NoError(t, err)
		require.Equal(t, srv.Addr(), u.Host, "the helper must use the external server, not start its own")
		require.Equal(t, "/"+m[1], u.Path)
		require.Equal(t, "dial_timeout=2s", u.RawQuery, "the URL's own db must be dropped, other options kept")
	}
	require.Len(t, seen, 3, "the server has 3 databases")
}
