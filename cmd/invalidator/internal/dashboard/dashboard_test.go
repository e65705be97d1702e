package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/dashboard"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/tasks"
)

const (
	testUser     = "ops"
	testPassword = "correct-horse-battery-staple"
	testQueue    = "invalidator-critical"
)

// syncBuffer is a log sink the server's goroutines may write concurrently.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testBundle struct {
	db   *redistest.DB
	srv  *httptest.Server
	logs *syncBuffer
}

// setup serves a dashboard over a fresh database; cfg's Redis and Logger are
// filled in.
func setup(t *testing.T, cfg dashboard.Config) *testBundle {
	t.Helper()
	b := &testBundle{db: redistest.NewDB(t), logs: &syncBuffer{}}
	cfg.Redis = b.db.Client
	cfg.Logger = slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := dashboard.New(cfg)
	require.NoError(t, err)
	b.srv = httptest.NewServer(h)
	t.Cleanup(b.srv.Close)
	return b
}

func withAuth(cfg dashboard.Config) dashboard.Config {
	cfg.Username, cfg.Password = testUser, testPassword
	return cfg
}

// do sends a request; user "" sends no credentials. header holds extra
// headers as name, value pairs; "Host" sets the request's Host.
func (b *testBundle) do(t *testing.T, method, path, user, password string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, b.srv.URL+path, nil)
	require.NoError(t, err)
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1] // the client ignores a Host header
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

// enqueue puts a task on testQueue so the queue exists and lists it.
func enqueue(t *testing.T, db *redistest.DB, task tasks.Task) {
	t.Helper()
	enqueueTo(t, db, testQueue, task)
}

func enqueueTo(t *testing.T, db *redistest.DB, queue string, task tasks.Task) {
	t.Helper()
	payload, err := tasks.Marshal(task)
	require.NoError(t, err)
	c := asynq.NewClientFromRedisClient(db.Client)
	_, err = c.EnqueueContext(t.Context(), asynq.NewTask(task.Kind(), payload), asynq.Queue(queue))
	require.NoError(t, err)
}

func TestAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, withAuth(dashboard.Config{}))

	for name, creds := range map[string][2]string{
		"none":           {"", ""},
		"wrong password": {testUser, "wrong-password-123"},
		"wrong user":     {"admin", testPassword},
		"prefix":         {testUser, testPassword[:5]},
	} {
		for _, path := range []string{"/", "/monitoring/", "/monitoring/api/queues"} {
			resp, body := b.do(t, http.MethodGet, path, creds[0], creds[1])
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s %s", name, path)
			require.Contains(t, resp.Header.Get("WWW-Authenticate"), `Basic realm=`)
			require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
			require.NotContains(t, body, testPassword)
		}
	}

	resp, body := b.do(t, http.MethodGet, "/monitoring/", testUser, testPassword)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "<title>Asynq - Monitoring</title>")
	resp, _ = b.do(t, http.MethodGet, "/monitoring/api/queues", testUser, testPassword)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	logs := b.logs.String()
	require.Contains(t, logs, "missing or wrong credentials")
	for _, secret := range []string{testPassword, "wrong-password-123", testPassword[:5]} {
		require.NotContains(t, logs, secret)
	}
}

func TestLoopbackWithoutAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, dashboard.Config{})
	resp, _ := b.do(t, http.MethodGet, "/monitoring/api/queues", "", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, b.logs.String(), "without authentication")
}

func TestRedirectAndHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, withAuth(dashboard.Config{}))

	resp, _ := b.do(t, http.MethodGet, "/", testUser, testPassword)
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, "/monitoring/", resp.Header.Get("Location"))

	resp, _ = b.do(t, http.MethodGet, "/monitoring/", testUser, testPassword)
	require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
	require.Equal(t, "frame-ancestors 'none'", resp.Header.Get("Content-Security-Policy"))
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	require.Equal(t, "same-origin", resp.Header.Get("Referrer-Policy"))

	resp, _ = b.do(t, http.MethodGet, "/monitoring/api/queues", testUser, testPassword)
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	t.Parallel()
	b := setup(t, withAuth(dashboard.Config{}))
	enqueue(t, b.db, tasks.DeleteKeys{Keys: []string{"user:1"}})
	origin := b.srv.URL

	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/monitoring/api/queues/" + testQueue + ":pause"},
		{http.MethodDelete, "/monitoring/api/queues/" + testQueue + "/pending_tasks:delete_all"},
		{http.MethodPut, "/monitoring/api/queues/" + testQueue},
		{http.MethodPost, "/monitoring/"},
	} {
		resp, body := b.do(t, tc.method, tc.path, testUser, testPassword, "Origin", origin)
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "%s %s", tc.method, tc.path)
		require.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
		if strings.HasPrefix(tc.path, "/monitoring/api/") {
			require.Contains(t, body, "read-only")
			require.Contains(t, body, "--allow-writes")
		}
	}

	info, err := asynq.NewInspectorFromRedisClient(b.db.Client).GetQueueInfo(testQueue)
	require.NoError(t, err)
	require.False(t, info.Paused)
	require.Equal(t, 1, info.Pending)
}

func TestWritesNeedSameOrigin(t *testing.T) {
	t.Parallel()
	b := setup(t, withAuth(dashboard.Config{AllowWrites: true}))
	enqueue(t, b.db, tasks.DeleteKeys{Keys: []string{"user:1"}})
	pause := "/monitoring/api/queues/" + testQueue + ":pause"
	paused := func() bool {
		info, err := asynq.NewInspectorFromRedisClient(b.db.Client).GetQueueInfo(testQueue)
		require.NoError(t, err)
		return info.Paused
	}

	for name, header := range map[string][]string{
		"cross-site fetch":    {"Sec-Fetch-Site", "cross-site"},
		"same-site fetch":     {"Sec-Fetch-Site", "same-site"},
		"other origin":        {"Origin", "https://evil.example"},
		"other port":          {"Origin", "http://127.0.0.1:1"},
		"null origin":         {"Origin", "null"},
		"origin over referer": {"Origin", "https://evil.example", "Referer", b.srv.URL + "/monitoring/"},
	} {
		resp, body := b.do(t, http.MethodPost, pause, testUser, testPassword, header...)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, name)
		require.Contains(t, body, "CSRF", name)
	}
	require.False(t, paused())

	// Credentials still come first.
	resp, _ := b.do(t, http.MethodPost, pause, "", "", "Origin", b.srv.URL)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	resp, body := b.do(t, http.MethodPost, pause, testUser, testPassword, "Origin", b.srv.URL)
	require.Less(t, resp.StatusCode, 300, body)
	require.True(t, paused())
	require.Contains(t, b.logs.String(), "write through the dashboard")

	resume := "/monitoring/api/queues/" + testQueue + ":resume"
	resp, body = b.do(t, http.MethodPost, resume, testUser, testPassword, "Sec-Fetch-Site", "same-origin")
	require.Less(t, resp.StatusCode, 300, body)
	require.False(t, paused())

	// A request that says nowhere it comes from is not a browser's, so
	// not a forged one: a script with the credentials may write.
	resp, body = b.do(t, http.MethodPost, pause, testUser, testPassword)
	require.Less(t, resp.StatusCode, 300, body)
	require.True(t, paused())
}

// pendingPayloads lists testQueue's pending tasks through the asynqmon API.
func pendingPayloads(t *testing.T, b *testBundle) []string {
	t.Helper()
	resp, body := b.do(t, http.MethodGet, "/monitoring/api/queues/"+testQueue+"/pending_tasks", testUser, testPassword)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var listing struct {
		Tasks []struct {
			Type    string `json:"type"`
			Payload string `json:"payload"`
		} `json:"tasks"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &listing), body)
	var out []string
	for _, task := range listing.Tasks {
		out = append(out, task.Type+" => "+task.Payload)
	}
	return out
}

func enqueueSensitive(t *testing.T, db *redistest.DB) {
	t.Helper()
	enqueue(t, db, tasks.DeleteKeys{
		Keys:       []string{"user:1:profile", "session:SECRET-TOKEN", "user:1:email:alice@example.com"},
		Target:     "sessions",
		EnqueuedAt: time.Now(),
	})
	enqueue(t, db, tasks.DeleteFamily{Family: "user_profile", Params: map[string]string{"email": "bob@example.com"}})
	enqueue(t, db, tasks.BumpVersion{Family: "user_feed", Params: map[string]string{"user_id": "4242"}})
	enqueue(t, db, tasks.Event{Name: "user.updated", Attrs: map[string]string{"email": "carol@example.com"}, Target: "sessions"})
	c := asynq.NewClientFromRedisClient(db.Client)
	_, err := c.EnqueueContext(t.Context(), asynq.NewTask(tasks.KindDeleteKeys, []byte("RAW-SECRET-BYTES")), asynq.Queue(testQueue))
	require.NoError(t, err)
}

func TestPayloadsRedacted(t *testing.T) {
	t.Parallel()
	b := setup(t, withAuth(dashboard.Config{}))
	enqueueSensitive(t, b.db)

	payloads := pendingPayloads(t, b)
	require.ElementsMatch(t, []string{
		`invalidate:keys => invalidate:keys: 3 keys, first "user:1:profile" (others hidden)`,
		`invalidate:family => invalidate:family: family "user_profile", email (values hidden)`,
		`invalidate:version => invalidate:version: family "user_feed", user_id (values hidden)`,
		`invalidate:event => invalidate:event: event "user.updated", email (values hidden)`,
		`invalidate:keys => undecodable (16 bytes)`,
	}, payloads)
	all := strings.Join(payloads, "\n")
	for _, secret := range []string{"SECRET-TOKEN", "alice@", "bob@", "carol@", "4242", "RAW-SECRET"} {
		require.NotContains(t, all, secret)
	}
}

func TestShowPayloads(t *testing.T) {
	t.Parallel()
	b := setup(t, withAuth(dashboard.Config{ShowPayloads: true}))
	enqueueSensitive(t, b.db)

	all := strings.Join(pendingPayloads(t, b), "\n")
	for _, want := range []string{
		`3 keys ["user:1:profile" "session:SECRET-TOKEN" "user:1:email:alice@example.com"], target "sessions", enqueued `,
		`family "user_profile" email="bob@example.com"`,
		`family "user_feed" user_id="4242"`,
		`event "user.updated" email="carol@example.com", target "sessions"`,
		`undecodable (16 bytes): `,
	} {
		require.Contains(t, all, want)
	}
	require.NotContains(t, all, "RAW-SECRET", "raw bytes are never shown")
}

func TestRedactPayload(t *testing.T) {
	t.Parallel()
	marshal := func(task tasks.Task) []byte {
		p, err := tasks.Marshal(task)
		require.NoError(t, err)
		return p
	}
	long := strings.Repeat("k", 100)
	for name, tc := range map[string]struct {
		kind    string
		payload []byte
		want    string
	}{
		"one key":      {tasks.KindDeleteKeys, marshal(tasks.DeleteKeys{Keys: []string{"a"}}), `invalidate:keys: 1 key "a"`},
		"binary key":   {tasks.KindDeleteKeys, marshal(tasks.DeleteKeys{Keys: []string{"\xff\x00k", "x"}}), `invalidate:keys: 2 keys, first "\xff\x00k" (others hidden)`},
		"long key":     {tasks.KindDeleteKeys, marshal(tasks.DeleteKeys{Keys: []string{long}}), `invalidate:keys: 1 key "` + long[:64] + `"... (100 bytes)`},
		"no params":    {tasks.KindDeleteFamily, marshal(tasks.DeleteFamily{Family: "all_users"}), `invalidate:family: family "all_users"`},
		"unknown kind": {"email:send", []byte(`{"to":"x@example.com"}`), `undecodable (22 bytes)`},
		"wrong kind":   {tasks.KindBumpVersion, marshal(tasks.DeleteKeys{Keys: []string{"a"}}), "undecodable ("},
		"empty":        {tasks.KindDeleteKeys, nil, "undecodable (0 bytes)"},
	} {
		got := dashboard.RedactPayload(tc.kind, tc.payload)
		require.True(t, strings.HasPrefix(got, tc.want), "%s: got %s", name, got)
	}

	many := make([]string, tasks.MaxKeysPerTask)
	for i := range many {
		many[i] = strings.Repeat("x", 1000)
	}
	got := dashboard.RevealPayload(tasks.KindDeleteKeys, marshal(tasks.DeleteKeys{Keys: many}))
	require.Less(t, len(got), 20<<10, "revealed payloads are bounded")
	require.Contains(t, got, " more]")
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	rdb := redistest.NewDB(t).Client
	for addr, loopback := range map[string]bool{
		"127.0.0.1:8080":           true,
		"127.1.2.3:0":              true,
		"localhost:8080":           true,
		"LOCALHOST.:8080":          true,
		"[::1]:8080":               true,
		"[::ffff:127.0.0.1]:8080":  true,
		"0.0.0.0:8080":             false,
		"[::]:8080":                false,
		":8080":                    false,
		"10.0.0.1:8080":            false,
		"dashboard.internal:8080":  false,
		"localhost.evil.example:1": false,
	} {
		got, err := dashboard.IsLoopback(addr)
		require.NoError(t, err)
		require.Equal(t, loopback, got, addr)

		err = dashboard.Config{Redis: rdb, Addr: addr}.Validate()
		if loopback {
			require.NoError(t, err, addr)
		} else {
			require.ErrorIs(t, err, dashboard.ErrAuthRequired, addr)
			require.Contains(t, err.Error(), addr)
			require.NoError(t, dashboard.Config{Redis: rdb, Addr: addr, Username: "u", Password: "p"}.Validate())
		}
	}

	_, err := dashboard.IsLoopback("no-port")
	require.ErrorIs(t, err, dashboard.ErrBadAddr)
	require.ErrorIs(t, dashboard.Config{Redis: rdb, Username: "u"}.Validate(), dashboard.ErrBadCredentials)
	err = dashboard.Config{Redis: rdb, Password: "only-a-password"}.Validate()
	require.ErrorIs(t, err, dashboard.ErrBadCredentials)
	require.NotContains(t, err.Error(), "only-a-password")
	require.ErrorIs(t, dashboard.Config{Redis: rdb, Username: "a:b", Password: "p"}.Validate(), dashboard.ErrBadCredentials)
	require.ErrorIs(t, dashboard.Config{}.Validate(), dashboard.ErrNoRedis)
	_, err = dashboard.New(dashboard.Config{Redis: rdb, Addr: "0.0.0.0:8080"})
	require.ErrorIs(t, err, dashboard.ErrAuthRequired)
}

func TestServeShutsDownOnCancel(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.Equal(t, "http://"+ln.Addr().String()+"/monitoring/", dashboard.URL(ln.Addr()))

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	go func() { done <- dashboard.Serve(ctx, ln, h, nil) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after ctx was cancelled")
	}
	_, err = http.Get("http://" + ln.Addr().String() + "/")
	require.Error(t, err, "the listener is closed")
}

func TestURL(t *testing.T) {
	t.Parallel()
	require.Equal(t, "http://localhost:8080/monitoring/", dashboard.URL(&net.TCPAddr{IP: net.IPv4zero, Port: 8080}))
	require.Equal(t, "http://localhost:8080/monitoring/", dashboard.URL(&net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}))
	require.Equal(t, "http://[::1]:8080/monitoring/", dashboard.URL(&net.TCPAddr{IP: net.IPv6loopback, Port: 8080}))
}
