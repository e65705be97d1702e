package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
)

// killBound is what TestFaultKillWorkerMidBatch allows from a kill -9 until
// every key of the killed worker's tasks is gone. The target is 5 s with the
// default heartbeat timers; the bound is generous for noisy machines, and
// far below the 60-120 s that asynq's own lease recovery needs.
const killBound = 20 * time.Second

// kill -9 of one of two workers mid-batch, with the cache stalled so that
// tasks are in flight: the survivor rescues the dead worker's tasks, every
// key is gone within seconds, every rescue and redelivery is logged, and
// nothing ends in the dead letter. Runs alternate between killing the worker
// that holds the rescuer role (the survivor must take the role over first)
// and the other one.
func TestFaultKillWorkerMidBatch(t *testing.T) {
	t.Parallel()
	bin := testBinary(t)
	queue := redistest.NewDB(t)
	cache := redistest.StartServer(t)
	policyFile := writePolicy(t, cliPolicy)
	policy, err := keyspec.Load(policyFile)
	require.NoError(t, err)
	env := append(os.Environ(), envRedisURL+"="+queue.URL, envPolicy+"="+policyFile, envCacheRedisURL+"="+cache.URL())
	k := &killRun{t: t, bin: bin, env: env, queue: queue.Client, cache: cache.NewClient(), policy: policy}

	var took []time.Duration
	for run := range 3 {
		d := k.run(run, run%2 == 0)
		took = append(took, d)
		require.Less(t, d, killBound, "run %d: keys of the killed worker still cached", run)
	}
	slices.Sort(took)
	t.Logf("kill -9 → every key gone: p50 %s, max %s over %d runs (%v)",
		took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), len(took), took)
}

type killRun struct {
	t      *testing.T
	bin    string
	env    []string
	queue  *redis.Client
	cache  *redis.Client
	policy *keyspec.Policy
}

// run does one kill and returns the time from the kill until every key is
// gone. killRescuer picks the worker that holds the rescuer role as victim.
func (k *killRun) run(run int, killRescuer bool) time.Duration {
	t := k.t
	ctx := context.Background()
	require.NoError(t, k.queue.FlushDB(ctx).Err())
	require.NoError(t, k.cache.FlushDB(ctx).Err())

	// The first worker started takes the rescuer role.
	first := k.startWorker()
	k.waitRescuer(first)
	second := k.startWorker()
	victim, survivor := second, first
	if killRescuer {
		victim, survivor = first, second
	}

	const perTask = 50
	var keys []string
	for i := range 40 * perTask {
		keys = append(keys, fmt.Sprintf("run%d:key:%d", run, i))
	}
	pipe := k.cache.Pipeline()
	for _, key := range keys {
		pipe.Set(ctx, key, "v", 0)
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)

	// Stall the cache's writes: the workers' UNLINKs wait, their tasks
	// stay in flight.
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
	var enqueued []string
	var claims map[int][]string
	// Batches of 5 tasks until both workers hold some of them, all in flight.
	for batch := 0; ; batch++ {
		require.Less(t, batch, 8, "the tasks never spread over both workers: %v", claims)
		for range 5 {
			ids, err := inv.DeleteKeys(ctx, keys[len(enqueued)*perTask:(len(enqueued)+1)*perTask]...)
			require.NoError(t, err)
			enqueued = append(enqueued, ids...)
		}
		require.Eventually(t, func() bool {
			claims = k.claims()
			return len(claims[victim.pid()])+len(claims[survivor.pid()]) == len(enqueued)
		}, 20*time.Second, 10*time.Millisecond, "the workers never claimed all %d tasks: %v", len(enqueued), claims)
		if len(claims[victim.pid()]) >= 2 && len(claims[survivor.pid()]) >= 1 {
			break
		}
	}
	victimID := k.workerID(victim.pid())
	held := len(claims[victim.pid()])

	victim.signal(t, syscall.SIGKILL)
	killed := time.Now()
	require.Error(t, victim.wait(t, 10*time.Second))
	unpause()
	keys = keys[:len(enqueued)*perTask]
	require.Eventually(t, func() bool { return k.existing(keys) == 0 }, 2*killBound, 5*time.Millisecond,
		"keys still cached after the kill; survivor logs:\n%s", survivor.logs)
	took := time.Since(killed)
	t.Logf("run %d (killed the %s, which held %d of %d tasks): every key gone %s after kill -9",
		run, map[bool]string{true: "rescuer", false: "other worker"}[killRescuer], held, len(enqueued), took.Round(time.Millisecond))

	// Every task of the dead worker was rescued and ran again, with a log
	// line for each; nothing failed.
	logs := survivor.logs.String()
	require.Eventually(t, func() bool {
		logs = survivor.logs.String()
		return strings.Count(logs, "redelivered task") == held
	}, 10*time.Second, 10*time.Millisecond, "survivor logs:\n%s", logs)
	require.Equal(t, held, strings.Count(logs, "rescued task of a crashed worker"), logs)
	require.Contains(t, logs, "worker_id="+victimID)
	require.Equal(t, 1, strings.Count(logs, "worker stopped sending heartbeats"), logs)
	// And counted: the survivor rescued them (it is the rescuer, or took
	// the role over) and ran them again.
	base := metricsURL(t, survivor)
	queueLabel := map[string]string{"queue": "invalidator-standard"}
	require.Equal(t, held, scrapeMetric(t, base, "invalidator_tasks_rescued_total", queueLabel), "tasks_rescued_total")
	require.Equal(t, held, scrapeMetric(t, base, "invalidator_tasks_redelivered_total", queueLabel), "tasks_redelivered_total")
	require.Equal(t, 1, scrapeMetric(t, base, "invalidator_dead_workers_total", nil), "dead_workers_total")
	insp := asynq.NewInspectorFromRedisClient(k.queue)
	require.Eventually(t, func() bool {
		qi, err := insp.GetQueueInfo("invalidator-standard")
		require.NoError(t, err)
		require.Zero(t, qi.Archived+qi.Retry, "nothing may fail or reach the dead letter: %+v", qi)
		return qi.Active+qi.Pending == 0
	}, 10*time.Second, 10*time.Millisecond)

	survivor.signal(t, syscall.SIGTERM)
	require.NoError(t, survivor.wait(t, 20*time.Second), "survivor logs:\n%s", survivor.logs)
	return took
}

func (k *killRun) startWorker() *proc {
	t := k.t
	p := startProc(t, k.bin, k.env, "worker", "--metrics-addr", "127.0.0.1:0")
	require.Eventually(t, func() bool { return strings.Contains(p.logs.String(), "worker started") },
		30*time.Second, 10*time.Millisecond, "logs:\n%s", p.logs)
	require.Eventually(t, func() bool { return k.workerID(p.pid()) != "" }, 10*time.Second, 10*time.Millisecond)
	return p
}

// waitRescuer waits until p holds the rescuer role.
func (k *killRun) waitRescuer(p *proc) {
	require.Eventually(k.t, func() bool {
		return k.queue.Get(context.Background(), "invalidator:{fleet}:rescuer").Val() == k.workerID(p.pid())
	}, 10*time.Second, 10*time.Millisecond)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// records reads the workers' heartbeat records: "<expiry> <seq> <json>"
// by worker id (worker/heartbeat.go).
func (k *killRun) records() map[string]struct {
	PID   int                 `json:"pid"`
	Tasks map[string][]string `json:"tasks"`
} {
	all, err := k.queue.HGetAll(context.Background(), "invalidator:{fleet}:workers").Result()
	require.NoError(k.t, err)
	out := map[string]struct {
		PID   int                 `json:"pid"`
		Tasks map[string][]string `json:"tasks"`
	}{}
	for id, v := range all {
		parts := strings.SplitN(v, " ", 3)
		require.Len(k.t, parts, 3, v)
		rec := out[id]
		require.NoError(k.t, json.Unmarshal([]byte(parts[2]), &rec), v)
		out[id] = rec
	}
	return out
}

// claims returns the task ids each worker's record claims, by pid.
func (k *killRun) claims() map[int][]string {
	out := map[int][]string{}
	for _, r := range k.records() {
		for _, ids := range r.Tasks {
			out[r.PID] = append(out[r.PID], ids...)
		}
	}
	return out
}

func (k *killRun) workerID(pid int) string {
	for id, r := range k.records() {
		if r.PID == pid {
			return id
		}
	}
	return ""
}

// existing counts the keys still in the cache.
func (k *killRun) existing(keys []string) int {
	ctx := context.Background()
	pipe := k.cache.Pipeline()
	cmds := make([]*redis.IntCmd, 0, len(keys)/100+1)
	for i := 0; i < len(keys); i += 100 {
		cmds = append(cmds, pipe.Exists(ctx, keys[i:min(i+100, len(keys))]...))
	}
	_, err := pipe.Exec(ctx)
	require.NoError(k.t, err)
	n := 0
	for _, c := range cmds {
		n += int(c.Val())
	}
	return n
}

// Bad heartbeat flags are usage errors, caught before any Redis is dialled.
func TestWorkerRescueFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--heartbeat-interval", "-1s"},
		{"--heartbeat-timeout", "-1s"},
		{"--heartbeat-timeout", "900ms"}, // below 2 × the default 500ms interval
		{"--heartbeat-interval", "1s", "--heartbeat-timeout", "1500ms"},
		{"--max-rescues", "-1"},
	} {
		r := invoke(t, nil, "", append([]string{"worker", "--redis", "redis://127.0.0.1:1/0"}, args...)...)
		require.Equal(t, exitUsage, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stderr, strings.TrimPrefix(args[len(args)-2], "--"), args)
	}
	r := invoke(t, nil, "", "worker", "--help")
	require.Equal(t, exitOK, r.code)
	for _, flag := range []string{"--heartbeat-interval", "--heartbeat-timeout", "--max-rescues", "--rescue"} {
		require.Contains(t, r.stdout, flag)
	}
}

// scrapeMetric reads a process's /metrics and sums the samples of name
// whose labels include labels (nil: every sample of name). A series not
// exported yet (a counter vector before its first increment) reads 0.
func scrapeMetric(t *testing.T, base, name string, labels map[string]string) int {
	t.Helper()
	code, body := httpGet(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code, body)
	total := 0.0
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue // a comment, or another metric with this prefix
		}
		series, value, ok := strings.Cut(rest, " ")
		if rest[0] == '{' {
			end := strings.Index(rest, "} ")
			require.Positive(t, end, line)
			series, value = rest[:end+1], rest[end+2:]
		}
		require.True(t, ok || rest[0] == '{', line)
		match := true
		for k, v := range labels {
			match = match && strings.Contains(series, k+`="`+v+`"`)
		}
		if match {
			f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			require.NoError(t, err, line)
			total += f
		}
	}
	return int(total)
}
