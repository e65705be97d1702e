package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

func waitPolicy(mode string) string {
	return `version: 1
classes:
  standard: {ttl: 10m}
families:
  user_profile:
    template: "user:{id}:profile"
    class: standard
    mode: ` + mode + `
`
}

// startWaitWorker runs a worker in-process on db with the policy body.
func startWaitWorker(t *testing.T, db *redistest.DB, body string) {
	t.Helper()
	p, err := keyspec.Parse("p.yaml", []byte(body))
	require.NoError(t, err)
	w, err := worker.New(worker.Config{Queue: db.Client, Policy: p, PollInterval: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// a family in mode "off" returns from the family delete without
// writing any checkpoint, and the completed task is deleted by asynq, so
// `enqueue family --wait` never sees Finished nor an archived task: it
// polls forever (here until the 5s test deadline).
func TestWaitEndsForOffFamily(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	body := waitPolicy("off")
	startWaitWorker(t, db, body)
	require.NoError(t, db.Client.Set(t.Context(), "user:1:profile", 1, 0).Err())
	env := map[string]string{envRedisURL: db.URL, envPolicy: writePolicy(t, body)}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"enqueue", "family", "user_profile", "--yes", "--wait", "--json"},
		streams{in: strings.NewReader(""), out: &out, err: &errb}, func(k string) string { return env[k] })
	require.Equal(t, exitOK, code, "--wait did not return for a family in mode off: stdout=%s stderr=%s", out.String(), errb.String())
	require.Contains(t, out.String(), `"mode":"off"`)
	require.Equal(t, int64(1), db.Client.Exists(t.Context(), "user:1:profile").Val())
}

// in shadow mode the finished checkpoint's _deleted is the
// would-delete count, and --wait prints it as "deleted N keys".
func TestWaitReportsShadowCounts(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	body := waitPolicy("shadow")
	startWaitWorker(t, db, body)
	require.NoError(t, db.Client.MSet(t.Context(), "user:1:profile", 1, "user:2:profile", 1).Err())
	env := map[string]string{envRedisURL: db.URL, envPolicy: writePolicy(t, body)}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"enqueue", "family", "user_profile", "--yes", "--wait"},
		streams{in: strings.NewReader(""), out: &out, err: &errb}, func(k string) string { return env[k] })
	require.Equal(t, exitOK, code, errb.String())
	require.Equal(t, int64(2), db.Client.Exists(t.Context(), "user:1:profile", "user:2:profile").Val())
	require.NotContains(t, out.String(), "deleted 2 keys", "shadow mode deleted nothing, but --wait says it did")
	require.Contains(t, out.String(), "shadow mode: 2 keys would have been deleted")
}
