package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
)

// A task rescued from a killed worker is rescued again, within seconds, when
// the worker that took it is killed too: worker A takes a task on a stalled
// cache and is killed -9, B takes the rescued task and is killed -9 while it
// runs it, and C finishes it. The dead A's record still claims the task for
// a minute after it lapsed; that stale claim must not hold the task back.
func TestFaultKillTwice(t *testing.T) {
	t.Parallel()
	bin := testBinary(t)
	queue := redistest.NewDB(t)
	cache := redistest.StartServer(t)
	policyFile := writePolicy(t, cliPolicy)
	policy, err := keyspec.Load(policyFile)
	require.NoError(t, err)
	env := append(os.Environ(), envRedisURL+"="+queue.URL, envPolicy+"="+policyFile, envCacheRedisURL+"="+cache.URL())
	k := &killRun{t: t, bin: bin, env: env, queue: queue.Client, cache: cache.NewClient(), policy: policy}
	ctx := context.Background()

	a := k.startWorker()
	k.waitRescuer(a)
	const key = "twice:1"
	require.NoError(t, k.cache.Set(ctx, key, "v", 0).Err())
	// Stall the cache's writes: the task stays in flight on whichever
	// worker takes it.
	require.NoError(t, k.cache.Do(ctx, "CLIENT", "PAUSE", 60000, "WRITE").Err())
	unpaused := false
	unpause := func() {
		if !unpaused {
			unpaused = true
			require.NoError(t, k.cache.Do(ctx, "CLIENT", "UNPAUSE").Err())
		}
	}
	defer unpause()
	inv, err := enqueue.New(k.queue, enqueue.Config{Policy: k.policy})
	require.NoError(t, err)
	ids, err := inv.DeleteKeys(ctx, key)
	require.NoError(t, err)
	require.Len(t, ids, 1)
	id := ids[0]
	claimed := func(p *proc) bool { return slices.Contains(k.claims()[p.pid()], id) }
	require.Eventually(t, func() bool { return claimed(a) }, 20*time.Second, 10*time.Millisecond, "A never ran the task")

	b := k.startWorker()
	a.signal(t, syscall.SIGKILL)
	require.Error(t, a.wait(t, 10*time.Second))
	require.Eventually(t, func() bool { return claimed(b) }, 2*killBound, 10*time.Millisecond,
		"B never ran the task rescued from A; B logs:\n%s", b.logs)

	c := k.startWorker()
	b.signal(t, syscall.SIGKILL)
	killed := time.Now()
	require.Error(t, b.wait(t, 10*time.Second))
	unpause()
	require.Eventually(t, func() bool {
		return strings.Contains(c.logs.String(), "redelivered task") && k.existing([]string{key}) == 0 &&
			k.queue.Exists(ctx, "asynq:{invalidator-standard}:t:"+id).Val() == 0
	}, 2*killBound, 10*time.Millisecond, "the task of the second killed worker is not done; C logs:\n%s", c.logs)
	took := time.Since(killed)
	t.Logf("second kill -9 → task done by the third worker %s later", took.Round(time.Millisecond))
	require.Less(t, took, killBound, "C logs:\n%s", c.logs)
	require.Contains(t, c.logs.String(), "task_id="+id)

	c.signal(t, syscall.SIGTERM)
	require.NoError(t, c.wait(t, 20*time.Second), "C logs:\n%s", c.logs)
}
