package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

// deadPolicy makes a task dead at its first failure; item deletes stop
// at 10 keys.
const deadPolicy = `version: 1
classes:
  standard: {ttl: 10m, max_retry: 0}
families:
  item:
    template: "item:{id}"
    class: standard
    max_keys: 10
`

const deadQueue = "invalidator-standard"

// unlinkFault fails every UNLINK of a client while on.
type unlinkFault struct{ on atomic.Bool }

func (f *unlinkFault) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *unlinkFault) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, c redis.Cmder) error {
		if f.on.Load() && c.Name() == "unlink" {
			c.SetErr(fmt.Errorf("cache refused"))
			return c.Err()
		}
		return next(ctx, c)
	}
}
func (f *unlinkFault) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if f.on.Load() && c.Name() == "unlink" {
				for _, c := range cmds {
					c.SetErr(fmt.Errorf("cache refused"))
				}
				return cmds[0].Err()
			}
		}
		return next(ctx, cmds)
	}
}

type deadCLI struct {
	db    *redistest.DB
	env   map[string]string
	insp  *asynq.Inspector
	fault *unlinkFault
}

// deadSetup runs an in-process worker whose cache (the same database)
// fails every delete while fault is on.
func deadSetup(t *testing.T) *deadCLI {
	t.Helper()
	db := redistest.NewDB(t)
	path := writePolicy(t, deadPolicy)
	policy, err := keyspec.Load(path)
	require.NoError(t, err)
	cache := redis.NewClient(db.Client.Options())
	t.Cleanup(func() { _ = cache.Close() })
	fault := &unlinkFault{}
	cache.AddHook(fault)
	w, err := worker.New(worker.Config{Queue: db.Client, Cache: cache, Policy: policy,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), PollInterval: time.Millisecond,
		ShutdownTimeout: time.Second, DeadLetterSweep: 20 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return &deadCLI{db: db, env: map[string]string{envRedisURL: db.URL, envPolicy: path},
		insp: asynq.NewInspectorFromRedisClient(db.Client), fault: fault}
}

func (c *deadCLI) run(t *testing.T, args ...string) string {
	t.Helper()
	r := invoke(t, c.env, "", args...)
	require.Equal(t, exitOK, r.code, "invalidator %v: %s", args, r.stderr)
	return r.stdout
}

func (c *deadCLI) list(t *testing.T) []deadTask {
	t.Helper()
	var rows []deadTask
	require.NoError(t, json.Unmarshal([]byte(c.run(t, "dead", "list", "--json")), &rows))
	return rows
}

// kill enqueues a delete of each key while the cache fails, and waits
// until each task is archived and recorded.
func (c *deadCLI) kill(t *testing.T, keys ...string) []string {
	t.Helper()
	c.fault.on.Store(true)
	defer c.fault.on.Store(false)
	var ids []string
	for _, k := range keys {
		ids = append(ids, strings.TrimSpace(c.run(t, "enqueue", "keys", k)))
	}
	for _, id := range ids {
		require.Eventually(t, func() bool {
			ti, err := c.insp.GetTaskInfo(deadQueue, id)
			if err != nil || ti.State != asynq.TaskStateArchived {
				return false
			}
			_, ok, err := worker.ReadDeadTask(context.Background(), c.db.Client, deadQueue, id)
			require.NoError(t, err)
			return ok
		}, 15*time.Second, 2*time.Millisecond, "task %s never dead-lettered", id)
	}
	return ids
}

// trim deletes tasks from asynq's archive the way asynq's cap does: the
// task and its archive entry go, without a trace.
func (c *deadCLI) trim(t *testing.T, ids ...string) {
	t.Helper()
	for _, id := range ids {
		require.NoError(t, c.insp.DeleteTask(deadQueue, id))
	}
}

func (c *deadCLI) recordSize(t *testing.T) int64 {
	t.Helper()
	n, err := worker.DeadLetterSize(context.Background(), c.db.Client, deadQueue)
	require.NoError(t, err)
	return n
}

// Tasks that asynq trimmed from its archive are still in the dead letter:
// listed, retried (under their own ID) and purged.
func TestDeadLetterBeyondAsynqArchive(t *testing.T) {
	t.Parallel()
	c := deadSetup(t)
	ctx := context.Background()
	keys := []string{"k0", "k1", "k2", "k3", "k4"}
	for _, k := range keys {
		require.NoError(t, c.db.Client.Set(ctx, k, 1, 0).Err())
	}
	ids := c.kill(t, keys...)
	c.trim(t, ids[:3]...)

	rows := c.list(t)
	require.Len(t, rows, 5, "trimmed tasks are missing from dead list: %+v", rows)
	kept := map[string]string{}
	for _, r := range rows {
		kept[r.ID] = keptIn(r)
		require.Equal(t, "invalidate:keys", r.Kind)
		require.Contains(t, r.Reason, "cache refused")
		require.NotNil(t, r.FailedAt)
		require.NotNil(t, r.ArchivedAt)
	}
	require.Equal(t, map[string]string{ids[0]: "record", ids[1]: "record", ids[2]: "record",
		ids[3]: "archive+record", ids[4]: "archive+record"}, kept)
	table := c.run(t, "dead", "list")
	require.Contains(t, table, "3 of 5 tasks are kept only in invalidator's record")

	// One by ID, the rest with --all.
	out := c.run(t, "dead", "retry", ids[0])
	require.Contains(t, out, "1 task put back to run (enqueued again")
	ti, err := c.insp.GetTaskInfo(deadQueue, ids[0])
	if err == nil { // it may have run and gone already
		require.Equal(t, ids[0], ti.ID)
	}
	out = c.run(t, "dead", "retry", "--all")
	require.Contains(t, out, "4 tasks put back to run (2 of them enqueued again")
	require.Eventually(t, func() bool { return c.db.Client.Exists(ctx, keys...).Val() == 0 },
		15*time.Second, 2*time.Millisecond, "keys of retried tasks are still cached")
	require.Eventually(t, func() bool { return c.recordSize(t) == 0 }, 5*time.Second, 2*time.Millisecond)
	require.Contains(t, c.run(t, "dead", "list"), "the dead letter is empty")

	// Purge: by ID a trimmed one, then --all.
	ids = c.kill(t, "p0", "p1", "p2")
	c.trim(t, ids[0], ids[1])
	require.Contains(t, c.run(t, "dead", "purge", "--yes", ids[0]), "1 task purged")
	require.Contains(t, c.run(t, "dead", "purge", "--yes", "--all"), "2 tasks purged")
	require.Zero(t, c.recordSize(t))
	info, err := c.insp.GetQueueInfo(deadQueue)
	require.NoError(t, err)
	require.Zero(t, info.Archived)
	r := invoke(t, c.env, "", "dead", "retry", ids[0])
	require.Equal(t, exitFailure, r.code)
	require.Contains(t, r.stderr, "is in no queue's dead letter")
}

// --force on a family delete that asynq trimmed marks the checkpoint of
// the same task ID, and the re-enqueued task finishes the scan.
func TestDeadRetryForceTrimmedFamilyDelete(t *testing.T) {
	t.Parallel()
	c := deadSetup(t)
	ctx := context.Background()
	var keys []string
	for i := range 30 {
		keys = append(keys, fmt.Sprintf("item:%d", i))
		require.NoError(t, c.db.Client.Set(ctx, keys[i], 1, 0).Err())
	}
	id := strings.TrimSpace(c.run(t, "enqueue", "family", "item", "--yes"))
	// The record is written before asynq archives the task: wait for both,
	// as asynq can only trim an archived task.
	require.Eventually(t, func() bool {
		ti, err := c.insp.GetTaskInfo(deadQueue, id)
		if err != nil || ti.State != asynq.TaskStateArchived {
			return false
		}
		_, ok, err := worker.ReadDeadTask(ctx, c.db.Client, deadQueue, id)
		require.NoError(t, err)
		return ok
	}, 15*time.Second, 2*time.Millisecond)
	require.Equal(t, int64(len(keys)), c.db.Client.Exists(ctx, keys...).Val(), "max_keys did not stop the delete")
	c.trim(t, id)

	out := c.run(t, "dead", "retry", "--force", id)
	require.Contains(t, out, "1 task put back to run (enqueued again")
	require.Eventually(t, func() bool { return c.db.Client.Exists(ctx, keys...).Val() == 0 },
		15*time.Second, 2*time.Millisecond, "the forced family delete did not finish")
	require.Equal(t, "1", c.db.Client.HGet(ctx, "invalidator:scan:{"+id+"}", "_force").Val(),
		"--force marked another checkpoint than the task's")
	require.Zero(t, c.recordSize(t))
}

// A task an operator archived never failed: dead list says so instead of
// an empty reason and a year-1 failure time.
func TestDeadListOperatorArchive(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	env := map[string]string{envRedisURL: db.URL, envPolicy: writePolicy(t, cliPolicy)}
	r := invoke(t, env, "", "enqueue", "keys", "a")
	require.Equal(t, exitOK, r.code, r.stderr)
	id := strings.TrimSpace(r.stdout)
	require.NoError(t, asynq.NewInspectorFromRedisClient(db.Client).ArchiveTask("invalidator-standard", id))

	r = invoke(t, env, "", "dead", "list", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var raw []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &raw))
	require.Len(t, raw, 1)
	require.Equal(t, worker.ReasonArchivedByOperator, raw[0]["reason"])
	require.Contains(t, raw[0], "failed_at")
	require.Nil(t, raw[0]["failed_at"], "failed_at of a task that never failed")

	r = invoke(t, env, "", "dead", "list")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.NotContains(t, r.stdout, "0001-01-01")
	require.Regexp(t, id[:shortIDLen]+`\s+invalidator-standard\s+invalidate:keys\s+-\s+archive\s+.*\n\s+reason: archived by an operator`, r.stdout)
}

// dead list keeps to 120 columns without cutting the reason; dead show
// prints one task in full; retry, purge and show take an ID prefix as the
// list shows it; counts read "1 task", and a purge that did nothing says
// only why.
func TestDeadListShowAndPrefixes(t *testing.T) {
	t.Parallel()
	c := deadSetup(t)
	long := "k:" + strings.Repeat("very-long-key-segment/", 8)
	ids := c.kill(t, long, "k1", "k2")
	rows := c.list(t)
	require.Len(t, rows, 3)

	table := c.run(t, "dead", "list")
	for _, l := range strings.Split(strings.TrimRight(table, "\n"), "\n") {
		require.LessOrEqual(t, utf8.RuneCountInString(l), deadListWidth, "line wider than %d columns: %q", deadListWidth, l)
	}
	flat := strings.Join(strings.Fields(table), " ")
	for _, r := range rows {
		require.Contains(t, flat, strings.Join(strings.Fields(r.Reason), " "), "reason cut in the table:\n%s", table)
		require.Contains(t, table, r.ID[:shortIDLen])
	}

	prefix := ids[0][:shortIDLen]
	out := c.run(t, "dead", "show", prefix)
	require.Contains(t, out, ids[0])
	require.Contains(t, out, long, "the summary is cut in dead show")
	var shown deadTask
	require.NoError(t, json.Unmarshal([]byte(c.run(t, "dead", "show", prefix, "--json")), &shown))
	for _, r := range rows {
		if r.ID == ids[0] {
			require.Equal(t, r, shown)
		}
	}

	require.Equal(t, "1 task put back to run\n", c.run(t, "dead", "retry", ids[1][:shortIDLen]))
	require.Equal(t, "1 task purged\n", c.run(t, "dead", "purge", "--yes", ids[2][:shortIDLen]))

	r := invoke(t, c.env, "", "dead", "purge", "--yes", "ffffffff-0000-0000-0000-000000000000")
	require.Equal(t, exitFailure, r.code, r.stderr)
	require.Empty(t, r.stdout, "a purge that purged nothing printed a count before its error")
	require.Contains(t, r.stderr, "is in no queue's dead letter")
	r = invoke(t, c.env, "", "dead", "show", "abc")
	require.Equal(t, exitFailure, r.code, r.stderr)
	require.Contains(t, r.stderr, "is in no queue's dead letter")
}

func TestShortIDsAreUniquePrefixes(t *testing.T) {
	t.Parallel()
	rows := []deadTask{{ID: "abcdefgh-1111"}, {ID: "abcdefgh-2222"}, {ID: "12345678-3333"}, {ID: "short"}}
	require.Equal(t, map[string]string{"abcdefgh-1111": "abcdefgh-1", "abcdefgh-2222": "abcdefgh-2",
		"12345678-3333": "12345678", "short": "short"}, shortIDs(rows))
}

func TestWrapKeepsWordsAndCuts(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"aaa bbb", "ccc"}, wrap("aaa  bbb\nccc", 7, 3))
	require.Equal(t, []string{"abcd", "efgh", "ij"}, wrap("abcdefghij", 4, 3))
	require.Equal(t, []string{"abcd", "efg…"}, wrap("abcdefghij", 4, 2))
	require.Empty(t, wrap("", 10, 3))
}

// A dry run above the family's max_keys says that the real run would stop
// there; the real run's dead-letter reason says max_keys in its own words,
// not "poison task:", which means an undecodable payload.
func TestDryRunWarnsOfMaxKeysStop(t *testing.T) {
	t.Parallel()
	c := deadSetup(t)
	ctx := context.Background()
	const maxKeys = 10 // deadPolicy's item family
	var keys []string
	for i := range 3 * maxKeys {
		keys = append(keys, fmt.Sprintf("item:%d", i))
		require.NoError(t, c.db.Client.Set(ctx, keys[i], 1, 0).Err())
	}
	out := c.run(t, "enqueue", "family", "item", "--dry-run")
	require.Contains(t, out, fmt.Sprintf("%d keys match", len(keys)))
	require.Contains(t, out, fmt.Sprintf("max_keys %d of family item would stop this delete", maxKeys))

	id := strings.TrimSpace(c.run(t, "enqueue", "family", "item", "--yes"))
	require.Eventually(t, func() bool {
		_, ok, err := worker.ReadDeadTask(ctx, c.db.Client, deadQueue, id)
		require.NoError(t, err)
		return ok
	}, 15*time.Second, 2*time.Millisecond)
	var shown deadTask
	require.NoError(t, json.Unmarshal([]byte(c.run(t, "dead", "show", id, "--json")), &shown))
	require.True(t, strings.HasPrefix(shown.Reason, "max_keys reached: "), shown.Reason)
	require.NotContains(t, shown.Reason, "poison")
	require.NotRegexp(t, `\d+h0m0s`, shown.Reason, "a Go-formatted duration in the reason")

	// Under the cap, no warning.
	require.NotContains(t, c.run(t, "enqueue", "family", "item", "id=1", "--dry-run"), "max_keys")
}
