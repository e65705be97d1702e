package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// A Redis that answers but refuses the URL's password, or has no database of
// its number, is a mistake in the URL, not an outage: exit 2 (usage), with
// the URL redacted and what to fix, never 3 (unreachable) or 1, and never
// the password.
func TestRedisConfigErrorsAreUsageErrors(t *testing.T) {
	t.Parallel()
	const password = "right-pw-9137"
	const wrong = "wrong-pw-5521"
	locked := redistest.StartServerWith(t, redistest.ServerOptions{Password: password})
	open := redistest.StartServer(t) // 16 databases, no password
	lockedURL := func(userinfo, db string) string { return "redis://" + userinfo + locked.Addr() + "/" + db }
	openURL := func(db string) string { return "redis://" + open.Addr() + "/" + db }
	policy := writePolicy(t, cliPolicy)

	cases := map[string]struct {
		env  map[string]string
		args []string
		want []string // in stderr
	}{
		"wrong password": {
			env:  map[string]string{envRedisURL: lockedURL(":"+wrong+"@", "0")},
			args: []string{"enqueue", "keys", "k"},
			want: []string{"queue Redis " + lockedURL(":xxxxx@", "0"), "WRONGPASS", "password"},
		},
		"unknown user": {
			env:  map[string]string{envRedisURL: lockedURL("nobody:"+password+"@", "0")},
			args: []string{"queues"},
			want: []string{"queue Redis " + lockedURL("nobody:xxxxx@", "0"), "WRONGPASS", "user"},
		},
		"no password given": {
			env:  map[string]string{envRedisURL: lockedURL("", "0")},
			args: []string{"enqueue", "keys", "k"},
			want: []string{"queue Redis " + lockedURL("", "0"), "NOAUTH", "requires a password", "redis://:PASSWORD@"},
		},
		"database out of range": {
			env:  map[string]string{envRedisURL: openURL("16")},
			args: []string{"enqueue", "keys", "k"},
			want: []string{"queue Redis " + openURL("16"), "DB index is out of range", "database 16", "databases"},
		},
		"database out of range, with the password": {
			env:  map[string]string{envRedisURL: lockedURL(":"+password+"@", "99")},
			args: []string{"dead", "list"},
			want: []string{"queue Redis " + lockedURL(":xxxxx@", "99"), "database 99"},
		},
		"cache Redis with a wrong password": {
			env:  map[string]string{envRedisURL: openURL("0"), envPolicy: policy},
			args: []string{"enqueue", "family", "user_profile", "id=1", "--dry-run", "--cache-redis", lockedURL(":"+wrong+"@", "0")},
			want: []string{"cache Redis " + lockedURL(":xxxxx@", "0"), "WRONGPASS"},
		},
	}
	// A group, so that its parallel cases end before the server stops below.
	t.Run("refused", func(t *testing.T) {
		for name, tc := range cases {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				r := invoke(t, tc.env, "", tc.args...)
				require.Equal(t, exitUsage, r.code, "stdout=%s stderr=%s", r.stdout, r.stderr)
				for _, w := range tc.want {
					require.Contains(t, r.stderr, w)
				}
				require.NotContains(t, r.stderr, "did not answer", "the server did answer")
				for _, secret := range []string{password, wrong} {
					require.NotContains(t, r.stdout+r.stderr, secret)
				}
				require.Empty(t, r.stdout)
			})
		}
	})

	// The right password and database work, and a server that is down is
	// still exit 3.
	r := invoke(t, map[string]string{envRedisURL: locked.URL()}, "", "enqueue", "keys", "k")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.False(t, strings.Contains(r.stderr, password))
	locked.Stop()
	r = invoke(t, map[string]string{envRedisURL: locked.URL()}, "", "enqueue", "keys", "k")
	require.Equal(t, exitUnreachable, r.code, r.stderr)
	require.NotContains(t, r.stderr, password)
}
