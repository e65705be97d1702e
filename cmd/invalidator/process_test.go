package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// TestProcess builds the binary and drives it as a user would: a worker
// process, enqueues from other processes, and a SIGTERM at the end.
func TestProcess(t *testing.T) {
	t.Parallel()
	bin := testBinary(t)

	db := redistest.NewDB(t)
	ctx := context.Background()
	policy := writePolicy(t, cliPolicy)

	// A SIGHUP while the worker is still connecting (systemctl reload right
	// after start) must not end it: SIGHUP's default action would.
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	require.NoError(t, err)
	defer silent.Close()
	starting := exec.Command(bin, "worker", "--redis", "redis://"+silent.Addr().String()+"/0")
	starting.Env = append(os.Environ(), envPolicy+"="+policy)
	require.NoError(t, starting.Start())
	// Signal once it is connecting, not after a fixed sleep: a race-built
	// binary on a loaded machine may not have reached main in 300ms.
	conn, err := silent.Accept()
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, starting.Process.Signal(syscall.SIGHUP))
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, starting.Process.Signal(syscall.SIGTERM))
	err = starting.Wait()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr, "the worker cannot have started against a silent Redis")
	require.Equal(t, exitUnreachable, exitErr.ExitCode(), "a SIGHUP during start-up killed the worker: %v", err)
	env := append(os.Environ(), envRedisURL+"="+db.URL, envPolicy+"="+policy)

	worker := startProc(t, bin, env, "worker", "--poll-interval", "1ms", "--log-level", "debug")
	logs := worker.logs

	cli := func(args ...string) string {
		t.Helper()
		c := exec.Command(bin, args...)
		c.Env = env
		out, err := c.CombinedOutput()
		require.NoError(t, err, "invalidator %v: %s", args, out)
		return string(out)
	}
	gone := func(keys ...string) time.Duration {
		t.Helper()
		start := time.Now()
		require.Eventually(t, func() bool { return db.Client.Exists(ctx, keys...).Val() == 0 },
			20*time.Second, time.Millisecond, "worker logs:\n%s", logs)
		return time.Since(start)
	}

	// Keys, including a binary one; its near twin survives.
	require.NoError(t, db.Client.MSet(ctx, "a", 1, "b", 1, "c", 1, "\x00\xff", 1, "\x00\xfe", 1).Err())
	cli("enqueue", "keys", "a", "b", "c")
	t.Logf("3 keys gone %s after enqueue returned", gone("a", "b", "c"))
	cli("enqueue", "keys", "--hex", "00ff")
	gone("\x00\xff")
	require.Equal(t, int64(1), db.Client.Exists(ctx, "\x00\xfe").Val())

	// A family of 2,000 among 20,000 keys; a literal "*" id stays literal.
	pipe := db.Client.Pipeline()
	var family, others []string
	for i := range 20000 {
		k := fmt.Sprintf("user:%d:settings", i)
		if i%10 == 0 {
			k = fmt.Sprintf("user:%d:profile", i)
			family = append(family, k)
		} else {
			others = append(others, k)
		}
		pipe.Set(ctx, k, 1, 0)
	}
	pipe.Set(ctx, "user:*:profile", 1, 0)
	_, err = pipe.Exec(ctx)
	require.NoError(t, err)
	cli("enqueue", "family", "user_profile", "id=*")
	gone("user:*:profile")
	require.Equal(t, int64(len(family)), db.Client.Exists(ctx, family...).Val(), "id=* must not widen the delete")
	// 2,000 keys is above --confirm-above: without a terminal it needs --yes.
	refused := exec.Command(bin, "enqueue", "family", "user_profile")
	refused.Env = env
	out, err := refused.CombinedOutput()
	require.Error(t, err, "%s", out)
	require.Contains(t, string(out), "2000 keys match user:*:profile")
	require.Contains(t, string(out), "without --yes")
	require.Contains(t, cli("enqueue", "family", "user_profile", "--dry-run"), "2000 keys match")
	require.Equal(t, int64(len(family)), db.Client.Exists(ctx, family...).Val(), "a refused or dry-run delete deleted")
	waited := cli("enqueue", "family", "user_profile", "--yes", "--wait", "--json")
	require.Zero(t, db.Client.Exists(ctx, family...).Val(), "--wait returned before the delete finished")
	var fd familyDeleteResult
	require.NoError(t, json.Unmarshal([]byte(waited), &fd), waited)
	require.Equal(t, int64(len(family)), fd.Deleted)
	require.Len(t, fd.TaskIDs, 1)
	require.Equal(t, int64(len(others)), db.Client.Exists(ctx, others...).Val(), "only the family may go")

	// A garbage payload from a plain asynq client is archived; the worker goes on.
	aq := asynq.NewClientFromRedisClient(db.Client)
	info, err := aq.Enqueue(asynq.NewTask("invalidate:keys", []byte{0xde, 0xad}), asynq.Queue("invalidator-standard"))
	require.NoError(t, err)
	require.NoError(t, db.Client.Set(ctx, "after", 1, 0).Err())
	cli("enqueue", "keys", "after")
	gone("after")
	insp := asynq.NewInspectorFromRedisClient(db.Client)
	require.Eventually(t, func() bool {
		ti, err := insp.GetTaskInfo("invalidator-standard", info.ID)
		return err == nil && ti.State == asynq.TaskStateArchived
	}, 10*time.Second, 5*time.Millisecond)
	require.Contains(t, cli("dead", "list"), info.ID[:shortIDLen])

	// A dead-lettered invalidation put back with `dead retry --all` runs.
	require.NoError(t, db.Client.Set(ctx, "revived", 1, 0).Err())
	require.NoError(t, insp.PauseQueue("invalidator-standard"))
	revived := cli("enqueue", "keys", "revived")
	require.NoError(t, insp.ArchiveTask("invalidator-standard", strings.TrimSpace(revived)))
	require.NoError(t, insp.UnpauseQueue("invalidator-standard"))
	require.Contains(t, cli("dead", "retry", "--all"), "2 tasks put back") // with the poison one
	gone("revived")

	// SIGHUP reloads the policy: a new event in shadow mode counts and keeps
	// the key; a broken file is refused and the old policy stays; enforce
	// then deletes.
	reload := func(body, want string) {
		t.Helper()
		require.NoError(t, os.WriteFile(policy, []byte(body), 0o600))
		before := strings.Count(logs.String(), want)
		worker.signal(t, syscall.SIGHUP)
		require.Eventually(t, func() bool { return strings.Count(logs.String(), want) > before },
			10*time.Second, 5*time.Millisecond, "no %q in worker logs:\n%s", want, logs)
	}
	withEvent := func(mode string) string {
		return strings.Replace(cliPolicy, "    class: standard\n", "    class: standard\n    mode: "+mode+"\n", 1) +
			"events:\n  user.updated:\n    attributes: [id]\n    invalidates: [user_profile]\n"
	}
	reload(withEvent("shadow"), "policy reloaded")
	require.Contains(t, logs.String(), "family mode changed")
	require.NoError(t, db.Client.Set(ctx, "user:{1}:profile", 1, 0).Err())
	require.NoError(t, db.Client.Set(ctx, "user:1:profile", 1, 0).Err())
	cli("enqueue", "event", "user.updated", "id=1")
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "shadow mode: would delete key") },
		10*time.Second, 5*time.Millisecond, "worker logs:\n%s", logs)
	require.Equal(t, int64(1), db.Client.Exists(ctx, "user:1:profile").Val(), "shadow mode deleted the key")

	reload(withEvent("shadow")+"  broken: {", "policy reload refused")
	require.Contains(t, logs.String(), policy+":")
	reload(withEvent("enforce"), "policy reloaded")
	cli("enqueue", "event", "user.updated", "id=1")
	gone("user:1:profile")

	// SIGTERM: a clean, prompt exit.
	worker.signal(t, syscall.SIGTERM)
	require.NoError(t, worker.wait(t, 20*time.Second), "worker logs:\n%s", logs)
	require.Contains(t, logs.String(), "worker stopped")
	require.Contains(t, logs.String(), "task moved to dead letter")

	// bench with worker processes of this binary (--workers).
	benchOut := cli("bench", "throughput", "--workers", "2", "--keys", "300", "--keys-per-call", "10", "--producers", "2", "--json")
	var res struct {
		Keys   int            `json:"keys"`
		Params map[string]any `json:"params"`
	}
	require.NoError(t, json.Unmarshal([]byte(benchOut[strings.LastIndex(benchOut, "{\"scenario\""):]), &res), benchOut)
	require.Equal(t, 300, res.Keys)
	require.EqualValues(t, 2, res.Params["workers"])
}

// syncBuffer is a bytes.Buffer that the process's output copier and the
// test can use at the same time.
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
