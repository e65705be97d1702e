package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

const servedPolicy = `version: 1
classes:
  standard: {ttl: 10m}
  bulk: {ttl: 10m, queue: invalidator-bulk}
families:
  user_profile:
    template: "user:{id}:profile"
    class: bulk
  user_feed:
    template: "feed:{user}"
    class: bulk
    strategy: version
events:
  user.updated:
    attributes: [id]
    invalidates:
      - family: user_profile
`

// enqueueJSON is the --json output of an enqueue command.
type enqueueJSON struct {
	TaskIDs     []string `json:"task_ids"`
	Queue       string   `json:"queue"`
	QueueServed *bool    `json:"queue_served"`
}

// startServingWorker runs a worker in-process whose policy holds only the
// given classes, and waits until its heartbeat record is written.
func startServingWorker(t *testing.T, db *redistest.DB, classes string) {
	t.Helper()
	p, err := keyspec.Parse("p.yaml", []byte("version: 1\nclasses:\n"+classes))
	require.NoError(t, err)
	w, err := worker.New(worker.Config{Queue: db.Client, Policy: p, PollInterval: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { return db.Client.HLen(context.Background(), "invalidator:{fleet}:workers").Val() == 1 },
		10*time.Second, 5*time.Millisecond, "the worker never wrote its heartbeat")
}

// A task on a queue that no worker serves waits, durably, until one starts:
// enqueue still succeeds (exit 0), but says so on stderr and in --json.
func TestEnqueueWarnsWhenNoWorkerServesTheQueue(t *testing.T) {
	t.Parallel()
	const warnStandard = "no worker serves queue invalidator-standard: the task waits until one starts"
	const warnBulk = "no worker serves queue invalidator-bulk: the task waits until one starts"
	db := redistest.NewDB(t)
	env := map[string]string{envRedisURL: db.URL, envPolicy: writePolicy(t, servedPolicy)}
	commands := map[string][]string{
		"keys":   {"enqueue", "keys", "k"},
		"family": {"enqueue", "family", "user_profile", "id=1", "--yes"},
		"bump":   {"enqueue", "bump", "user_feed", "user=1"},
		"event":  {"enqueue", "event", "user.updated", "id=1"},
	}
	queueOf := map[string]string{"keys": "invalidator-standard", "family": "invalidator-bulk", "bump": "invalidator-bulk", "event": "invalidator-bulk"}
	check := func(t *testing.T, served map[string]bool) {
		t.Helper()
		for name, args := range commands {
			q := queueOf[name]
			warn := "no worker serves queue " + q + ": the task waits until one starts"
			r := invoke(t, env, "", args...)
			require.Equal(t, exitOK, r.code, "%s: %s", name, r.stderr)
			require.Len(t, strings.Fields(r.stdout), 1, "%s: stdout is the task ID only: %q", name, r.stdout)
			if served[q] {
				require.NotContains(t, r.stderr, "no worker serves", name)
			} else {
				require.Contains(t, r.stderr, warn, name)
			}

			r = invoke(t, env, "", append(args, "--json")...)
			require.Equal(t, exitOK, r.code, "%s: %s", name, r.stderr)
			var out enqueueJSON
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
			require.Len(t, out.TaskIDs, 1)
			require.Equal(t, q, out.Queue, name)
			require.NotNil(t, out.QueueServed, "%s: %s", name, r.stdout)
			require.Equal(t, served[q], *out.QueueServed, name)
		}
		// --queue moves the task, and the check with it.
		r := invoke(t, env, "", "enqueue", "keys", "k", "--queue", "invalidator-bulk")
		require.Equal(t, exitOK, r.code, r.stderr)
		if served["invalidator-bulk"] {
			require.NotContains(t, r.stderr, "no worker serves")
		} else {
			require.Contains(t, r.stderr, warnBulk)
		}
	}

	t.Run("no worker", func(t *testing.T) { check(t, nil) })

	// A worker of another policy serves invalidator-bulk only.
	startServingWorker(t, db, "  bulk: {ttl: 10m, queue: invalidator-bulk}\n")
	t.Run("a worker of the bulk queue only", func(t *testing.T) {
		check(t, map[string]bool{"invalidator-bulk": true})
		r := invoke(t, env, "", "enqueue", "keys", "k")
		require.Contains(t, r.stderr, warnStandard)
	})

	// A plain asynq server (Worker.ServerConfig in a server of one's own)
	// has no invalidator heartbeat; asynq's registry shows it serving.
	srv := asynq.NewServerFromRedisClient(db.Client, asynq.Config{
		Queues: map[string]int{"invalidator-standard": 1}, TaskCheckInterval: 5 * time.Millisecond,
		LogLevel: asynq.FatalLevel, ShutdownTimeout: 100 * time.Millisecond,
	})
	require.NoError(t, srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })))
	t.Cleanup(srv.Shutdown)
	// Registered beside the worker's own asynq server.
	require.Eventually(t, func() bool { return db.Client.ZCard(context.Background(), "asynq:servers").Val() == 2 },
		10*time.Second, 5*time.Millisecond, "the asynq server never registered")
	t.Run("and a plain asynq server of the standard queue", func(t *testing.T) {
		check(t, map[string]bool{"invalidator-bulk": true, "invalidator-standard": true})
	})
}
