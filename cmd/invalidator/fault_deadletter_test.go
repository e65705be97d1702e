package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

// faultDeadTasks is past asynq's archive cap, so that asynq trims some.
const faultDeadTasks = 12000

// A dead letter past 10,000: a worker whose cache refuses connections
// dead-letters 12,000 key deletes (max_retry 0), asynq keeps 10,000 of
// them, and `dead list` still sees all 12,000; with a worker on the right
// cache, `dead retry --all` deletes every key and empties the dead letter.
func TestFaultDeadLetterPast10000(t *testing.T) {
	t.Parallel()
	bin := testBinary(t)
	start := time.Now()
	ctx := context.Background()
	queueDB, cacheDB := redistest.NewDB(t), redistest.NewDB(t)
	const policyBody = `version: 1
classes:
  standard: {ttl: 10m, max_retry: 0}
`
	policyPath := writePolicy(t, policyBody)
	env := append(os.Environ(), envRedisURL+"="+queueDB.URL, envPolicy+"="+policyPath)
	cli := func(args ...string) string {
		t.Helper()
		c := exec.Command(bin, args...)
		c.Env = env
		out, err := c.Output()
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		require.NoError(t, err, "invalidator %v: %s", args, stderr)
		return string(out)
	}
	// waitFor polls left, the work still to do, until it is 0. It fails
	// only when left has not gone down for stall, or after a bound of 10
	// minutes, with detail() as it is then: the work is 12,000 tasks, and
	// on a loaded machine a race-built worker was still dead-lettering
	// them steadily (about 50 a second) when a fixed 90 s ran out.
	waitFor := func(what string, stall time.Duration, left func() int64, detail func() string) {
		t.Helper()
		begin := time.Now()
		best, since := left(), time.Now()
		for best > 0 {
			if time.Since(since) > stall || time.Since(begin) > 10*time.Minute {
				t.Fatalf("%s: %d left, none done in the last %s (%s in all); %s",
					what, best, time.Since(since).Round(time.Second), time.Since(begin).Round(time.Second), detail())
			}
			time.Sleep(20 * time.Millisecond)
			if n := left(); n < best {
				best, since = n, time.Now()
			}
		}
	}
	waitLog := func(p *proc, want string) {
		t.Helper()
		require.Eventually(t, func() bool { return strings.Contains(p.logs.String(), want) },
			30*time.Second, 5*time.Millisecond, "no %q in logs:\n%s", want, p.logs)
	}

	keys := make([]string, faultDeadTasks)
	pipe := cacheDB.Client.Pipeline()
	for i := range keys {
		keys[i] = fmt.Sprintf("dead:%d", i)
		pipe.Set(ctx, keys[i], 1, 0)
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)

	// The first worker's cache is up at start (the worker checks it), then
	// refuses connections. Without client retries each attempt fails at
	// once rather than after go-redis's backoff.
	down := redistest.StartServer(t)
	sick := startProc(t, bin, env, "worker", "--cache-redis", down.URL()+"?max_retries=-1", "--poll-interval", "1ms")
	waitLog(sick, "worker started")
	down.Stop()

	policy, err := keyspec.Parse(policyPath, []byte(policyBody))
	require.NoError(t, err)
	// One task per key: the dead letter must hold past 10,000 tasks, which
	// coalesced calls would not make.
	inv, err := enqueue.New(queueDB.Client, enqueue.Config{Policy: policy, NoCoalesce: true})
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < len(keys); i += 8 {
				if _, err := inv.DeleteKeys(ctx, keys[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	require.NoError(t, <-errs)
	enqueued := time.Since(start)

	const queue = "invalidator-standard"
	recorded := func() int64 {
		n, err := worker.DeadLetterSize(ctx, queueDB.Client, queue)
		require.NoError(t, err)
		return n
	}
	waitFor("every task dead-lettered", 30*time.Second, func() int64 { return faultDeadTasks - recorded() }, func() string {
		return fmt.Sprintf("%d of %d recorded; worker logs:\n%s", recorded(), faultDeadTasks, tail(sick.logs.String(), 3000))
	})
	insp := asynq.NewInspectorFromRedisClient(queueDB.Client)
	require.Eventually(t, func() bool {
		info, err := insp.GetQueueInfo(queue)
		require.NoError(t, err)
		return info.Pending+info.Active+info.Retry == 0
	}, 30*time.Second, 20*time.Millisecond)
	info, err := insp.GetQueueInfo(queue)
	require.NoError(t, err)
	require.Equal(t, worker.AsynqArchiveCap, info.Archived,
		"asynq's archive holds %d of %d dead tasks: has asynq's cap changed? Update worker.AsynqArchiveCap and the alert", info.Archived, faultDeadTasks)
	sick.signal(t, syscall.SIGTERM)
	require.NoError(t, sick.wait(t, 30*time.Second))
	dead := time.Since(start)

	var rows []deadTask
	require.NoError(t, json.Unmarshal([]byte(cli("dead", "list", "--json")), &rows))
	seen := map[string]bool{}
	onlyRecord := 0
	for _, r := range rows {
		require.False(t, seen[r.ID], "task %s listed twice", r.ID)
		seen[r.ID] = true
		if !r.InArchive {
			onlyRecord++
		}
	}
	require.Equal(t, faultDeadTasks, len(rows), "dead list lost tasks past asynq's cap")
	require.Equal(t, faultDeadTasks-worker.AsynqArchiveCap, onlyRecord)
	listed := time.Since(start)

	healthy := startProc(t, bin, env, "worker", "--cache-redis", cacheDB.URL, "--poll-interval", "1ms")
	waitLog(healthy, "worker started")
	retryStart := time.Now()
	out := cli("dead", "retry", "--all")
	retryTook := time.Since(retryStart)
	require.Contains(t, out, fmt.Sprintf("%d tasks put back to run (%d of them", faultDeadTasks, faultDeadTasks-worker.AsynqArchiveCap))
	waitFor("every key gone", 30*time.Second, func() int64 { return cacheDB.Client.DBSize(ctx).Val() }, func() string {
		return fmt.Sprintf("%d keys still cached; worker logs:\n%s", cacheDB.Client.DBSize(ctx).Val(), tail(healthy.logs.String(), 3000))
	})
	require.Eventually(t, func() bool {
		info, err := insp.GetQueueInfo(queue)
		require.NoError(t, err)
		return info.Pending+info.Active+info.Retry+info.Archived == 0 && recorded() == 0
	}, 30*time.Second, 20*time.Millisecond, "the dead letter or the queue is not empty")
	require.Contains(t, cli("dead", "list"), "the dead letter is empty")
	t.Logf("%d tasks enqueued by %s, dead-lettered by %s, listed by %s; dead retry --all took %s (%.0f tasks/s, -race build); whole test %s",
		faultDeadTasks, enqueued.Round(time.Millisecond), dead.Round(time.Millisecond), listed.Round(time.Millisecond),
		retryTook.Round(time.Millisecond), float64(faultDeadTasks)/retryTook.Seconds(), time.Since(start).Round(time.Millisecond))
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
