package redisconn_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redisconn"
	"github.com/invalidator/invalidator/internal/redistest"
)

// A server that answers but refuses the URL's credentials or database is a
// mistake in the URL: the error matches ErrAuth or ErrNoDB (callers report
// it as such, not as an outage), names the redacted URL and what to fix,
// and never holds a password.
func TestPing_RefusalsOfTheURLAreClassified(t *testing.T) {
	t.Parallel()
	locked := redistest.StartServerWith(t, redistest.ServerOptions{Password: secret})
	open := redistest.StartServer(t) // 16 databases
	for name, tc := range map[string]struct {
		url  string
		kind error
		want []string
	}{
		"wrong password":                      {"redis://:wrong-" + secret + "@" + locked.Addr() + "/0", redisconn.ErrAuth, []string{"redis://:xxxxx@" + locked.Addr() + "/0 refused the credentials: WRONGPASS", "check the user and password"}},
		"unknown user":                        {"redis://nobody:" + secret + "@" + locked.Addr() + "/0", redisconn.ErrAuth, []string{"redis://nobody:xxxxx@", "refused the credentials"}},
		"no password":                         {"redis://" + locked.Addr() + "/0", redisconn.ErrAuth, []string{"requires a password and the URL gives none: NOAUTH", "redis://:PASSWORD@host:port/db"}},
		"database too high":                   {"redis://" + open.Addr() + "/16", redisconn.ErrNoDB, []string{"redis://" + open.Addr() + "/16 has no database 16: ERR DB index is out of range", "'databases' setting"}},
		"database too high behind a password": {"redis://:" + secret + "@" + locked.Addr() + "/99", redisconn.ErrNoDB, []string{"redis://:xxxxx@" + locked.Addr() + "/99 has no database 99"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := redisconn.Open(tc.url)
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
			err = redisconn.Ping(t.Context(), c, "queue Redis", tc.url)
			require.ErrorIs(t, err, tc.kind)
			other := redisconn.ErrNoDB
			if tc.kind == redisconn.ErrNoDB {
				other = redisconn.ErrAuth
			}
			require.NotErrorIs(t, err, other)
			msg := err.Error()
			require.True(t, strings.HasPrefix(msg, "queue Redis redis://"), msg)
			for _, w := range tc.want {
				require.Contains(t, msg, w)
			}
			require.NotContains(t, msg, secret)
			require.NotContains(t, msg, "did not answer")
		})
	}
}

// An outage matches neither: it is not the URL's fault.
func TestPing_UnreachableIsNoURLRefusal(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	c, err := redisconn.Open("redis://" + addr + "/0?max_retries=-1")
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	err = redisconn.Ping(context.Background(), c, "queue Redis", "redis://"+addr+"/0")
	require.Error(t, err)
	require.False(t, errors.Is(err, redisconn.ErrAuth) || errors.Is(err, redisconn.ErrNoDB), "%v", err)
}
