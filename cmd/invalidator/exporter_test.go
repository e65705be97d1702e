package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// runningCmd is a command running in-process in the background.
type runningCmd struct {
	out, err *syncBuffer
	code     chan int
	cancel   context.CancelFunc
}

// execExporter runs `invalidator exporter args...` as main does.
func execExporter(ctx context.Context, s streams, env map[string]string, args ...string) int {
	return run(ctx, append([]string{"exporter"}, args...), s, func(k string) string { return env[k] })
}

// startExporter runs the exporter in the background until the test cancels
// it or ends.
func startExporter(t *testing.T, env map[string]string, args ...string) *runningCmd {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r := &runningCmd{out: &syncBuffer{}, err: &syncBuffer{}, code: make(chan int, 1), cancel: cancel}
	go func() {
		r.code <- execExporter(ctx, streams{in: strings.NewReader(""), out: r.out, err: r.err}, env, args...)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.code
	})
	return r
}

// invokeExporter runs the exporter to completion.
func invokeExporter(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := execExporter(t.Context(), streams{in: strings.NewReader(""), out: &out, err: &errb}, env, args...)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

var servingRE = regexp.MustCompile(`serving http://([0-9.:]+)/metrics`)

// addr waits for the exporter to print the address it bound.
func (r *runningCmd) addr(t *testing.T) string {
	t.Helper()
	var addr string
	require.Eventually(t, func() bool {
		m := servingRE.FindStringSubmatch(r.out.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}, 10*time.Second, 10*time.Millisecond, "stdout: %s\nstderr: %s", r.out, r.err)
	return addr
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestExporter_ServesQueueMetricsAndHealth(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	queue := "invalidator-" + redistest.Prefix(t)
	cl := asynq.NewClientFromRedisClient(db.Client)
	for range 3 {
		_, err := cl.EnqueueContext(t.Context(), asynq.NewTask("invalidate:keys", []byte("x")), asynq.Queue(queue))
		require.NoError(t, err)
	}

	r := startExporter(t, map[string]string{envRedisURL: db.URL}, "--metrics-addr", "127.0.0.1:0", "--refresh-interval", "0")
	base := "http://" + r.addr(t)

	code, body := httpGet(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, want := range []string{
		`invalidator_queue_tasks{queue="` + queue + `",state="pending"} 3`,
		`invalidator_queue_tasks{queue="` + queue + `",state="archived"} 0`,
		`invalidator_queue_latency_seconds{queue="` + queue + `"}`,
		"invalidator_queue_stats_up 1",
		"go_goroutines ",
		"process_start_time_seconds ",
		"go_build_info{",
		"promhttp_metric_handler_requests_total",
	} {
		require.Contains(t, body, want)
	}
	code, body = httpGet(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	code, body = httpGet(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "queue Redis: ok")

	// Ctrl-C or SIGTERM cancels the context: a clean exit, port released.
	r.cancel()
	select {
	case c := <-r.code:
		r.code <- c // for the cleanup
		require.Equal(t, exitOK, c, r.err.String())
	case <-time.After(10 * time.Second):
		t.Fatal("exporter did not stop")
	}
}

func TestExporter_Errors(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	env := map[string]string{envRedisURL: db.URL}

	// A taken port fails at once, naming the address.
	first := startExporter(t, env, "--metrics-addr", "127.0.0.1:0")
	taken := first.addr(t)
	r := startExporter(t, env, "--metrics-addr", taken)
	select {
	case c := <-r.code:
		r.code <- c
		require.Equal(t, exitFailure, c)
		require.Contains(t, r.err.String(), "listen on "+taken)
	case <-time.After(10 * time.Second):
		t.Fatal("exporter on a taken port did not fail")
	}

	res := invokeExporter(t, env, "--timeout", "0s")
	require.Equal(t, exitUsage, res.code, res.stderr)
	require.Contains(t, res.stderr, "--timeout must be positive")
	res = invokeExporter(t, env, "--refresh-interval", "-1s")
	require.Equal(t, exitUsage, res.code, res.stderr)

	// The queue Redis down: exit 3, password hidden.
	const secret = "pa55-w0rd-x"
	res = invokeExporter(t, map[string]string{envRedisURL: "redis://u:" + secret + "@127.0.0.1:1/0"})
	require.Equal(t, exitUnreachable, res.code, res.stderr)
	require.NotContains(t, res.stdout+res.stderr, secret)
}
