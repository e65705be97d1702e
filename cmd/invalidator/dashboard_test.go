package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

const dashboardSecret = "dash-s3cret-pw"

func TestDashboardRefusesExposedAddrWithoutAuth(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", ":0", "dashboard.example:8080"} {
		// The Redis URL is unreachable: the refusal must come first.
		env := map[string]string{envRedisURL: "redis://127.0.0.1:1/0"}
		r := invoke(t, env, "", "dashboard", "--addr", addr)
		require.Equal(t, exitUsage, r.code, "addr %s: %s", addr, r.stderr)
		require.Contains(t, r.stderr, "refusing to start")
		require.Contains(t, r.stderr, "not loopback")
		require.Contains(t, r.stderr, envDashboardUser)
		require.Contains(t, r.stderr, envDashboardPassword)
		require.Contains(t, r.stderr, "--password-file")
		require.Contains(t, r.stderr, "--addr 127.0.0.1:8080")
		require.Empty(t, r.stdout)
	}
}

func TestDashboardCredentialErrorsHideThePassword(t *testing.T) {
	t.Parallel()
	// A password without a user is refused; the password never shows.
	env := map[string]string{envDashboardPassword: dashboardSecret}
	r := invoke(t, env, "", "dashboard", "--addr", "0.0.0.0:0")
	require.Equal(t, exitUsage, r.code, r.stderr)
	require.Contains(t, r.stderr, envDashboardUser)
	require.NotContains(t, r.stdout+r.stderr, dashboardSecret)

	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	r = invoke(t, map[string]string{envDashboardUser: "ops"}, "", "dashboard", "--password-file", empty)
	require.Equal(t, exitUsage, r.code, r.stderr)
	require.Contains(t, r.stderr, "is empty")

	r = invoke(t, map[string]string{envDashboardUser: "ops"}, "", "dashboard", "--password-file", filepath.Join(t.TempDir(), "missing"))
	require.Equal(t, exitUsage, r.code, r.stderr)

	file := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(file, []byte(dashboardSecret+"\n"), 0o600))
	env = map[string]string{envDashboardPassword: dashboardSecret, envDashboardPasswordFile: file}
	r = invoke(t, env, "", "dashboard")
	require.Equal(t, exitUsage, r.code, r.stderr)
	require.Contains(t, r.stderr, "keep one")
	require.NotContains(t, r.stdout+r.stderr, dashboardSecret)

	r = invoke(t, env, "", "dashboard", "--help")
	require.Equal(t, exitOK, r.code, r.stderr)
	for _, want := range []string{"--addr", "--allow-writes", "--show-payloads", "--password-file", envDashboardPassword, "127.0.0.1:8080"} {
		require.Contains(t, r.stdout, want)
	}
	require.NotContains(t, r.stdout+r.stderr, dashboardSecret)
}

func TestDashboardServesUntilCancelled(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	file := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(file, []byte(dashboardSecret+"\n"), 0o600))
	env := map[string]string{envRedisURL: db.URL, envDashboardUser: "ops"}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errb syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"dashboard", "--addr", "127.0.0.1:0", "--password-file", file},
			streams{in: strings.NewReader(""), out: &out, err: &errb}, func(k string) string { return env[k] })
	}()

	urlRE := regexp.MustCompile(`http://127\.0\.0\.1:\d+/monitoring/`)
	var url string
	deadline := time.After(10 * time.Second)
	for url == "" {
		select {
		case c := <-code:
			t.Fatalf("dashboard exited with %d before serving: %s", c, errb.String())
		case <-deadline:
			t.Fatalf("no URL printed; stderr: %s", errb.String())
		case <-time.After(10 * time.Millisecond):
			url = urlRE.FindString(out.String())
		}
	}
	require.Contains(t, out.String(), "read-only")

	get := func(method, path, user, password string) int {
		req, err := http.NewRequestWithContext(t.Context(), method, url+path, nil)
		require.NoError(t, err)
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, resp.Body.Close())
		return resp.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, get(http.MethodGet, "", "", ""))
	require.Equal(t, http.StatusUnauthorized, get(http.MethodGet, "", "ops", "wrong"))
	require.Equal(t, http.StatusOK, get(http.MethodGet, "", "ops", dashboardSecret))
	require.Equal(t, http.StatusOK, get(http.MethodGet, "api/queues", "ops", dashboardSecret))
	require.Equal(t, http.StatusMethodNotAllowed, get(http.MethodPost, "api/queues/q:pause", "ops", dashboardSecret))

	cancel()
	select {
	case c := <-code:
		require.Equal(t, exitOK, c, errb.String())
	case <-time.After(10 * time.Second):
		t.Fatal("dashboard did not stop after its context was cancelled")
	}
	require.NotContains(t, out.String()+errb.String(), dashboardSecret)
}
