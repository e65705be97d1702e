package dashboard_test

import (
	"net"
	"net/http"
	"net/url"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/dashboard"
	"github.com/invalidator/invalidator/tasks"
)

// port is the test server's port.
func (b *testBundle) port(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(b.srv.URL)
	require.NoError(t, err)
	return u.Port()
}

// doHost is do with the Host header set to host; user "" sends no
// credentials.
func (b *testBundle) doHost(t *testing.T, method, path, host, user, password string, header ...string) (*http.Response, string) {
	t.Helper()
	return b.do(t, method, path, user, password, append([]string{"Host", host}, header...)...)
}

func (b *testBundle) paused(t *testing.T) bool {
	t.Helper()
	info, err := asynq.NewInspectorFromRedisClient(b.db.Client).GetQueueInfo(testQueue)
	require.NoError(t, err)
	return info.Paused
}

// A page on a DNS-rebinding name (evil.example resolving to 127.0.0.1) sends
// Host and Origin that match each other, so it passes the same-origin check;
// without credentials, only the Host check stops it, for reads and writes.
func TestDNSRebindingRefusedWithoutCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t, dashboard.Config{AllowWrites: true}) // loopback, no credentials
	enqueue(t, b.db, tasks.DeleteKeys{Keys: []string{"k"}})
	port := b.port(t)

	for _, host := range []string{
		"evil.example:" + port,
		"evil.example",
		"localhost.evil.example:" + port,
		"127.0.0.1.evil.example:" + port,
		"10.0.0.1:" + port,
		"[::]:" + port,
		"0.0.0.0:" + port,
	} {
		origin := "http://" + host
		resp, body := b.doHost(t, http.MethodPost, "/monitoring/api/queues/"+testQueue+":pause", host, "", "", "Origin", origin)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "pause with Host %s: %s", host, body)
		require.False(t, b.paused(t), "a rebinding page on %s paused the queue", host)

		for _, path := range []string{"/", "/monitoring/", "/monitoring/api/queues", "/monitoring/api/queues/" + testQueue + "/pending_tasks"} {
			resp, body := b.doHost(t, http.MethodGet, path, host, "", "", "Origin", origin)
			require.Equal(t, http.StatusForbidden, resp.StatusCode, "GET %s with Host %s: %s", path, host, body)
			require.NotContains(t, body, testQueue, "a rebinding page read the queues")
			require.Contains(t, body, "DNS rebinding")
			require.Contains(t, body, "http://127.0.0.1:"+port+"/monitoring/", "the refusal says which URL works")
			require.Contains(t, body, "user name and password", "the refusal says how to serve other names")
			require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
		}
	}
	require.Contains(t, b.logs.String(), "Host is not loopback")
}

// Without credentials, every loopback spelling of the host still works, with
// any port, for reads and same-origin writes.
func TestLoopbackHostsWithoutCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t, dashboard.Config{AllowWrites: true})
	enqueue(t, b.db, tasks.DeleteKeys{Keys: []string{"k"}})
	port := b.port(t)

	for _, host := range []string{
		"127.0.0.1:" + port,
		"localhost:" + port,
		"LOCALHOST.:" + port,
		"[::1]:" + port,
		"127.0.0.2:" + port,
		"[::ffff:127.0.0.1]:" + port,
		"127.0.0.1:9999", // behind a port forward
		"127.0.0.1",
		"localhost",
		"[::1]",
	} {
		resp, body := b.doHost(t, http.MethodGet, "/monitoring/api/queues", host, "", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, "Host %s: %s", host, body)
		require.Contains(t, body, testQueue)
	}

	for _, host := range []string{"localhost:" + port, "[::1]:" + port} {
		origin := "http://" + host
		resp, body := b.doHost(t, http.MethodPost, "/monitoring/api/queues/"+testQueue+":pause", host, "", "", "Origin", origin)
		require.Less(t, resp.StatusCode, 300, "pause with Host %s: %s", host, body)
		require.True(t, b.paused(t))
		resp, body = b.doHost(t, http.MethodPost, "/monitoring/api/queues/"+testQueue+":resume", host, "", "", "Origin", origin)
		require.Less(t, resp.StatusCode, 300, "resume with Host %s: %s", host, body)
		require.False(t, b.paused(t))
	}
}

// With credentials, any Host is served to whoever has them: a rebinding page
// does not, since the browser keeps credentials per origin.
func TestAnyHostWithCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t, withAuth(dashboard.Config{AllowWrites: true}))
	enqueue(t, b.db, tasks.DeleteKeys{Keys: []string{"k"}})
	host := net.JoinHostPort("dashboard.example", b.port(t))
	origin := "http://" + host

	resp, body := b.doHost(t, http.MethodGet, "/monitoring/api/queues", host, testUser, testPassword)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, testQueue)

	resp, body = b.doHost(t, http.MethodPost, "/monitoring/api/queues/"+testQueue+":pause", host, testUser, testPassword, "Origin", origin)
	require.Less(t, resp.StatusCode, 300, body)
	require.True(t, b.paused(t))

	// Without the credentials, the same requests are refused.
	resp, _ = b.doHost(t, http.MethodGet, "/monitoring/api/queues", host, "", "")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = b.doHost(t, http.MethodPost, "/monitoring/api/queues/"+testQueue+":resume", host, "", "", "Origin", origin)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.True(t, b.paused(t))
}
