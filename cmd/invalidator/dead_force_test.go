package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

// listedDead is what these tests read of a `dead list --json` row.
type listedDead struct {
	ID     string `json:"id"`
	Queue  string `json:"queue"`
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}

// deadList runs `dead list --json`.
func deadList(t *testing.T, env map[string]string) []listedDead {
	t.Helper()
	r := invoke(t, env, "", "dead", "list", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var rows []listedDead
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rows), r.stdout)
	return rows
}

// `dead retry --force ID` finishes a family delete stopped at max_keys,
// end to end through the CLI: the stopped task is found in the dead letter,
// the checkpoint of its scan (not one named after the ID given, when that
// is a continuation's) gets max_keys lifted, and the scan resumes and
// deletes the whole family, and nothing is left in the dead letter.
func TestDeadRetryForceFinishesAFamilyDelete(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name         string
		keys         int
		maxKeys      int
		rate         float64 // the worker's family rate limit; 0: none
		continuation bool    // the task that stops at max_keys is a continuation
	}{
		// Stops on its first page.
		{name: "first task", keys: 500, maxKeys: 10},
		// 1s slices at 1000 keys/s: the first slice pauses under 2000
		// keys, and a continuation reaches max_keys.
		{name: "continuation", keys: 6000, maxKeys: 2500, rate: 1000, continuation: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			db := redistest.NewDB(t)
			body := fmt.Sprintf(`version: 1
classes:
  bulk: {ttl: 1m, timeout: 1s, max_retry: 3, backoff_base: 10ms, backoff_max: 20ms}
families:
  page: {template: "page:{id}:{n}", class: bulk, max_keys: %d}
`, c.maxKeys)
			policy, err := keyspec.Parse("p.yaml", []byte(body))
			require.NoError(t, err)
			env := map[string]string{envRedisURL: db.URL, envPolicy: writePolicy(t, body)}
			ctx := context.Background()
			var family []string
			pipe := db.Client.Pipeline()
			for i := range c.keys {
				k := fmt.Sprintf("page:7:%d", i)
				family = append(family, k)
				pipe.Set(ctx, k, 1, 0)
			}
			pipe.Set(ctx, "page:8:1", 1, 0)
			_, err = pipe.Exec(ctx)
			require.NoError(t, err)

			w, err := worker.New(worker.Config{Queue: db.Client, Policy: policy, PollInterval: 2 * time.Millisecond,
				RetryCheckInterval: 50 * time.Millisecond, ScanCount: 100, DeleteChunk: 100, FamilyRateLimit: c.rate,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			require.NoError(t, err)
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- w.Run(runCtx) }()
			t.Cleanup(func() { stop(); require.NoError(t, <-done) })

			client, err := enqueue.New(db.Client, enqueue.Config{Policy: policy})
			require.NoError(t, err)
			first, err := client.DeleteFamily(ctx, "page", map[string]string{"id": "7"})
			require.NoError(t, err)

			var rows []listedDead
			for deadline := time.Now().Add(20 * time.Second); len(rows) == 0; time.Sleep(20 * time.Millisecond) {
				require.True(t, time.Now().Before(deadline), "the family delete never stopped at max_keys")
				rows = deadList(t, env)
			}
			require.Len(t, rows, 1)
			stopped := rows[0]
			require.Contains(t, stopped.Reason, "max_keys")
			require.Contains(t, stopped.Reason, "dead retry --force "+stopped.ID, "the reason names the command to run")
			if c.continuation {
				require.NotEqual(t, first, stopped.ID, "the test meant a continuation to stop at max_keys")
			} else {
				require.Equal(t, first, stopped.ID)
			}
			left := existing(t, db.Client, family...)
			require.Positive(t, left)
			require.GreaterOrEqual(t, len(family)-left, 0)
			require.LessOrEqual(t, len(family)-left, c.maxKeys, "deleted past max_keys")

			r := invoke(t, env, "", "dead", "retry", "--force", stopped.ID)
			require.Equal(t, exitOK, r.code, r.stderr)
			require.Contains(t, r.stdout, "1 task put back")

			for deadline := time.Now().Add(20 * time.Second); existing(t, db.Client, family...) > 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the forced family delete did not finish: %d keys left; dead letter: %+v", existing(t, db.Client, family...), deadList(t, env))
				}
			}
			require.Equal(t, 1, existing(t, db.Client, "page:8:1"), "another id's key was deleted")
			// The scan's one checkpoint, named after the first task, is
			// the one that finished; the forced task had none of its own.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				p, err := worker.FamilyDeleteProgress(ctx, db.Client, first)
				require.NoError(t, err)
				if p.Finished {
					break
				}
				require.True(t, time.Now().Before(deadline), "the scan of %s never finished: %+v", first, p)
			}
			if c.continuation {
				p, err := worker.FamilyDeleteProgress(ctx, db.Client, stopped.ID)
				require.NoError(t, err)
				require.False(t, p.Found, "--force marked a checkpoint named after the continuation: %+v", p)
			}
			requireDrained(t, asynq.NewInspectorFromRedisClient(db.Client), "invalidator-bulk")
			require.Empty(t, deadList(t, env))
		})
	}
}
