package health_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/health"
	"github.com/invalidator/invalidator/internal/redistest"
)

// get serves one request and returns the status and body.
func get(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), method, path, nil))
	body, err := io.ReadAll(rec.Result().Body)
	require.NoError(t, err)
	return rec.Code, string(body)
}

func TestHealthz_AliveWithoutChecking(t *testing.T) {
	t.Parallel()
	called := false
	h := health.New([]health.Check{{Name: "x", Probe: func(context.Context) error { called = true; return errors.New("down") }}})
	code, body := get(t, h, http.MethodGet, "/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	require.False(t, called, "liveness must not depend on dependencies")

	code, _ = get(t, h, http.MethodHead, "/healthz")
	require.Equal(t, http.StatusOK, code)
	code, _ = get(t, h, http.MethodPost, "/healthz")
	require.Equal(t, http.StatusMethodNotAllowed, code)
	code, _ = get(t, h, http.MethodGet, "/nope")
	require.Equal(t, http.StatusNotFound, code)
}

func TestReadyz_BothRedisesUp(t *testing.T) {
	t.Parallel()
	h := health.New(health.PingAll(map[string]redis.UniversalClient{
		"queue Redis": redistest.Client(t),
		"cache Redis": redistest.Client(t),
	}))
	code, body := get(t, h, http.MethodGet, "/readyz")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "cache Redis: ok\nqueue Redis: ok\nok\n", body)
}

func TestReadyz_NoChecksIsReady(t *testing.T) {
	t.Parallel()
	code, _ := get(t, health.New(nil), http.MethodGet, "/readyz")
	require.Equal(t, http.StatusOK, code)
}

// The acceptance test of the issue: /readyz turns unhealthy when the cache
// Redis is stopped, and healthy again when it is back.
func TestReadyz_FollowsTheCacheRedis(t *testing.T) {
	t.Parallel()
	cache := redistest.StartServer(t)
	var logs bytes.Buffer
	h := health.New(health.PingAll(map[string]redis.UniversalClient{
		"queue Redis": redistest.Client(t),
		"cache Redis": cache.NewClient(),
	}), health.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))

	code, body := get(t, h, http.MethodGet, "/readyz")
	require.Equal(t, http.StatusOK, code, body)

	cache.Stop()
	code, body = get(t, h, http.MethodGet, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	// Refused or timed out, depending on go-redis's dial retries.
	require.Regexp(t, `^cache Redis: (unreachable|did not answer)`, body)
	require.Contains(t, body, "queue Redis: ok")
	require.NotContains(t, body, cache.Addr(), "responses name roles, not hosts")
	require.Contains(t, logs.String(), `check="cache Redis"`, "failures are logged")

	cache.Start()
	require.Eventually(t, func() bool {
		code, _ := get(t, h, http.MethodGet, "/readyz")
		return code == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond)
}

func TestReadyz_StuckProbeTimesOut(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	h := health.New([]health.Check{
		{Name: "stuck", Probe: func(context.Context) error { <-release; return nil }}, // ignores ctx
		{Name: "fine", Probe: func(context.Context) error { return nil }},
	}, health.WithTimeout(50*time.Millisecond))
	start := time.Now()
	code, body := get(t, h, http.MethodGet, "/readyz")
	require.Less(t, time.Since(start), 2*time.Second)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "stuck: did not answer within the timeout\nfine: ok\nnot ready\n", body)
}

func TestReadyz_ErrorsStayOutOfTheResponse(t *testing.T) {
	t.Parallel()
	h := health.New([]health.Check{{Name: "cache Redis", Probe: func(context.Context) error {
		return errors.New("WRONGPASS for redis://app:s3cret@cache:6379")
	}}})
	code, body := get(t, h, http.MethodGet, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.NotContains(t, body, "s3cret")
	require.NotContains(t, body, "cache:6379")
	require.Contains(t, body, "cache Redis: failed")
}

func TestPing_Cluster(t *testing.T) {
	t.Parallel()
	h := health.New([]health.Check{health.Ping("cache Redis", redistest.Cluster(t))})
	code, body := get(t, h, http.MethodGet, "/readyz")
	require.Equal(t, http.StatusOK, code, body)
}
