package redistest_test

import (
	"errors"
	"net"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

func TestServer_StopKillsItAndFreesThePort(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := redistest.StartTestServer(redistest.FreePort)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })

	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Ping(ctx).Err())

	require.NoError(t, s.Stop())
	require.False(t, serverRunning(s.PID(), s.Port()), "redis-server pid %d still runs after Stop", s.PID())
	l, err := net.Listen("tcp", s.Addr())
	require.NoError(t, err, "port %d still taken after Stop", s.Port())
	require.NoError(t, l.Close())
	_, err = os.Stat(s.Dir())
	require.ErrorIs(t, err, os.ErrNotExist, "Stop must remove the server's directory")
	require.NoError(t, s.Stop(), "Stop twice")
}

func TestServer_RetriesWhenThePortIsTaken(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = taken.Close() })
	takenPort := taken.Addr().(*net.TCPAddr).Port

	calls := 0
	pick := func() (int, error) {
		calls++
		if calls == 1 {
			return takenPort, nil
		}
		return redistest.FreePort()
	}
	s, err := redistest.StartTestServer(pick)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Stop()) })
	require.Equal(t, 2, calls)
	require.NotEqual(t, takenPort, s.Port())
}

func TestServer_StartFailureShowsTheServerLog(t *testing.T) {
	t.Parallel()
	_, err := redistest.StartTestServer(redistest.FreePort, "--no-such-directive", "x")
	require.Error(t, err)
	// redis-server's own complaint, from its log.
	require.Contains(t, err.Error(), "no-such-directive")
}

func TestServer_ErrorWhenPortsRunOut(t *testing.T) {
	t.Parallel()
	boom := errors.New("no ports today")
	_, err := redistest.StartTestServer(func() (int, error) { return 0, boom })
	require.ErrorIs(t, err, boom)
}
