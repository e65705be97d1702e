package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
)

const rescueQueue = "invalidator-standard"

// Short timers for the rescue tests: a worker is dead 200ms after its last
// heartbeat.
const (
	testHeartbeat        = 50 * time.Millisecond
	testHeartbeatTimeout = 200 * time.Millisecond
)

// rescuePolicy serves one queue, rescueQueue unless named.
func rescuePolicy(t *testing.T, queue ...string) *keyspec.Policy {
	t.Helper()
	q := rescueQueue
	if len(queue) > 0 {
		q = queue[0]
	}
	p, err := keyspec.Parse("p.yaml", []byte("version: 1\nclasses:\n  standard: {ttl: 1m, max_retry: 3, timeout: 30s, queue: "+q+"}\n"))
	require.NoError(t, err)
	return p
}

// zombie is a plain asynq server on a queue whose handler holds every task
// until released: to the queue Redis, a worker that stopped in the middle of
// its tasks (killed, or hung), or one of a build without heartbeats.
type zombie struct {
	srv     *asynq.Server
	started chan string // ids of the tasks it took
	release chan struct{}
	once    sync.Once
}

func startZombie(t *testing.T, rdb redis.UniversalClient, queue string, concurrency int) *zombie {
	t.Helper()
	z := &zombie{started: make(chan string, 100), release: make(chan struct{})}
	z.srv = asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Queues: map[string]int{queue: 1}, Concurrency: concurrency, TaskCheckInterval: 5 * time.Millisecond,
		ShutdownTimeout: 100 * time.Millisecond, Logger: asynqLogger{l: quiet()}, LogLevel: asynq.FatalLevel,
	})
	require.NoError(t, z.srv.Start(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		z.started <- id
		select {
		case <-z.release:
		case <-ctx.Done():
		}
		return nil
	})))
	t.Cleanup(z.stop)
	return z
}

// stop makes the server take no more tasks, releases the held ones and
// shuts it down.
func (z *zombie) stop() {
	z.once.Do(func() {
		z.srv.Stop()
		close(z.release)
		z.srv.Shutdown()
	})
}

// take waits until the zombie holds n tasks, makes it take no more (as if
// it had died), and returns their ids.
func (z *zombie) take(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		select {
		case id := <-z.started:
			ids = append(ids, id)
		case <-time.After(10 * time.Second):
			t.Fatalf("the zombie took %d tasks of %d", len(ids), n)
		}
	}
	z.srv.Stop()
	return ids
}

// enqueueKeys enqueues one key delete per key and returns the task ids.
func enqueueKeys(t *testing.T, rdb redis.UniversalClient, p *keyspec.Policy, keys ...string) []string {
	t.Helper()
	c, err := enqueue.New(rdb, enqueue.Config{Policy: p})
	require.NoError(t, err)
	var ids []string
	for _, k := range keys {
		got, err := c.DeleteKeys(context.Background(), k)
		require.NoError(t, err)
		ids = append(ids, got...)
	}
	return ids
}

// forgeRecord writes the heartbeat record of a worker of this process that
// claims tasks and whose record lapsed at Redis time now+lapse (in the past
// for a negative lapse).
func forgeRecord(t *testing.T, rdb redis.UniversalClient, id, queue string, lapse time.Duration, tasks ...string) {
	t.Helper()
	ctx := context.Background()
	now, err := rdb.Time(ctx).Result()
	require.NoError(t, err)
	body, err := json.Marshal(recordBody{Host: hostname(), PID: os.Getpid(), Queues: []string{queue},
		Tasks: map[string][]string{queue: tasks}, TimeoutMS: 2000})
	require.NoError(t, err)
	v := fmt.Sprintf("%d 7 %s", now.Add(lapse).UnixMilli(), body)
	require.NoError(t, rdb.HSet(ctx, fleetWorkersKey, id, v).Err())
	t.Cleanup(func() { _ = rdb.HDel(context.Background(), fleetWorkersKey, id).Err() })
}

// runWorker runs a worker with short heartbeat timers until the test ends.
func runWorker(t *testing.T, cfg Config) *Worker {
	t.Helper()
	cfg.Logger = quiet()
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.PollInterval = time.Millisecond
	cfg.HeartbeatInterval = testHeartbeat
	cfg.HeartbeatTimeout = testHeartbeatTimeout
	cfg.ShutdownTimeout = 200 * time.Millisecond
	w, err := New(cfg)
	require.NoError(t, err)
	runUntilCleanup(t, w)
	return w
}

func testMetrics(t *testing.T) *Metrics {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	return m
}

func taskState(t *testing.T, rdb redis.UniversalClient, queue, id string) string {
	t.Helper()
	st, err := rdb.HGet(context.Background(), asynqTaskKey(queue, id), "state").Result()
	if err == redis.Nil {
		return "gone"
	}
	require.NoError(t, err)
	return st
}

// The tasks a worker held when it died go back to their queue as soon as its
// heartbeat lapses, and a live worker applies them: seconds, not asynq's
// 60-120 s. Every rescue and redelivery is counted. On a Redis Cluster too,
// where the fleet's keys and each queue's keys live in different slots.
func TestRescueTasksOfDeadWorker(t *testing.T) {
	t.Parallel()
	t.Run("standalone", func(t *testing.T) {
		t.Parallel()
		testRescueTasksOfDeadWorker(t, redistest.Client(t), rescueQueue, "dead")
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		p := redistest.Prefix(t)
		testRescueTasksOfDeadWorker(t, redistest.Cluster(t), p+"-queue", p)
	})
}

func testRescueTasksOfDeadWorker(t *testing.T, rdb redis.UniversalClient, queue, prefix string) {
	p := rescuePolicy(t, queue)
	keys := []string{prefix + ":1", prefix + ":2", prefix + ":3"}
	SetKeys(t, rdb, keys...)
	z := startZombie(t, rdb, queue, 10)
	ids := enqueueKeys(t, rdb, p, keys...)
	require.ElementsMatch(t, ids, z.take(t, len(ids)))
	forgeRecord(t, rdb, prefix+"-host:1:0000", queue, -time.Second, ids...)

	m := testMetrics(t)
	start := time.Now()
	runWorker(t, Config{Queue: rdb, Policy: p, Metrics: m})
	requireKeysGone(t, rdb, 20*time.Second, keys...)
	t.Logf("the keys of a dead worker's tasks were gone %s after the rescuer started", time.Since(start).Round(time.Millisecond))

	require.Equal(t, 3.0, testutil.ToFloat64(m.rescuedTotal.WithLabelValues(queue)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.deadWorkersTotal))
	require.Eventually(t, func() bool { return testutil.ToFloat64(m.redeliveredTotal.WithLabelValues(queue)) == 3 },
		10*time.Second, 5*time.Millisecond, "every rescued task that ran again is a counted redelivery")
	require.Eventually(t, func() bool {
		for _, id := range ids {
			if taskState(t, rdb, queue, id) != "gone" {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "the rerun completes the task in asynq")
	require.Eventually(t, func() bool {
		n, err := rdb.ZMScore(context.Background(), fleetRescuedKey, ids...).Result()
		require.NoError(t, err)
		return slices.Equal(n, []float64{0, 0, 0})
	}, 10*time.Second, 5*time.Millisecond, "seen redeliveries leave the rescued set")

	// The "dead" worker was only stuck: when it finishes, its completion
	// finds nothing to complete, and nothing is left behind.
	z.stop()
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetQueueInfo(queue)
	require.NoError(t, err)
	require.Zero(t, info.Active+info.Pending+info.Retry+info.Archived, "%+v", info)
}

// Tasks no heartbeat claims may belong to a worker of an older build during
// a rolling upgrade: they are left to asynq while such an asynq server is
// registered, and rescued once none is.
func TestRescueLeavesTasksOfForeignServersAlone(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	p := rescuePolicy(t)
	keys := []string{"old:1", "old:2"}
	SetKeys(t, rdb, keys...)
	z := startZombie(t, rdb, rescueQueue, 10)
	ids := enqueueKeys(t, rdb, p, keys...)
	z.take(t, len(ids))
	// An asynq server on another host that writes no heartbeats.
	old := "asynq:servers:{old-build-host:4242:3f1c9d7e-0000-4000-8000-000000000000}"
	require.NoError(t, rdb.ZAdd(ctx, asynqServersKey, redis.Z{Score: float64(time.Now().Add(time.Hour).Unix()), Member: old}).Err())

	m := testMetrics(t)
	runWorker(t, Config{Queue: rdb, Policy: p, Metrics: m})
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(m.rescueSkippedTotal.WithLabelValues(rescueQueue, "foreign_server")) == 2
	}, 10*time.Second, 5*time.Millisecond)
	require.Zero(t, testutil.ToFloat64(m.rescuedTotal.WithLabelValues(rescueQueue)))
	for _, id := range ids {
		require.Equal(t, "active", taskState(t, rdb, rescueQueue, id))
	}
	require.Equal(t, 2, CountExisting(t, rdb, keys...))

	// The old build's server goes, and the zombie, this process's asynq
	// server, turns out to be a worker that died before its heartbeat
	// listed its tasks.
	require.NoError(t, rdb.ZRem(ctx, asynqServersKey, old).Err())
	forgeRecord(t, rdb, "died-early", rescueQueue, -time.Second)
	requireKeysGone(t, rdb, 20*time.Second, keys...)
	require.Equal(t, 2.0, testutil.ToFloat64(m.rescuedTotal.WithLabelValues(rescueQueue)))
}

// A process that runs a worker and an asynq server of its own on the same
// Redis registers two asynq servers under one host and pid, where its
// heartbeat record accounts for one: the other is foreign, and the tasks
// no heartbeat claims are left alone. Once a record accounts for it too
// (here, the lapsed record of a worker that died before its heartbeat
// listed them), they are rescued.
func TestRescueCountsAsynqServersOfAProcess(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	p := rescuePolicy(t)
	keys := []string{"own:1", "own:2"}
	SetKeys(t, rdb, keys...)
	own := startZombie(t, rdb, rescueQueue, 10) // this process's own asynq server
	ids := enqueueKeys(t, rdb, p, keys...)
	own.take(t, len(ids))

	m := testMetrics(t)
	runWorker(t, Config{Queue: rdb, Policy: p, Metrics: m})
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(m.rescueSkippedTotal.WithLabelValues(rescueQueue, "foreign_server")) == 2
	}, 10*time.Second, 5*time.Millisecond)
	require.Zero(t, testutil.ToFloat64(m.rescuedTotal.WithLabelValues(rescueQueue)))
	for _, id := range ids {
		require.Equal(t, "active", taskState(t, rdb, rescueQueue, id))
	}

	forgeRecord(t, rdb, "died-early", rescueQueue, -time.Second)
	requireKeysGone(t, rdb, 10*time.Second, keys...)
	require.Equal(t, 2.0, testutil.ToFloat64(m.rescuedTotal.WithLabelValues(rescueQueue)))
}

// A task that kills every worker that takes it is rescued MaxRescues times,
// then left to asynq's lease recovery, which counts attempts and ends in the
// dead letter.
func TestRescueGivesUpOnCrashLoopingTask(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	p := rescuePolicy(t)
	SetKeys(t, rdb, "loop:once", "loop:many")
	z := startZombie(t, rdb, rescueQueue, 10)
	ids := enqueueKeys(t, rdb, p, "loop:once", "loop:many")
	z.take(t, 2)
	require.NoError(t, rdb.HSet(ctx, asynqTaskKey(rescueQueue, ids[0]), rescuesField, DefaultMaxRescues-1).Err())
	require.NoError(t, rdb.HSet(ctx, asynqTaskKey(rescueQueue, ids[1]), rescuesField, DefaultMaxRescues).Err())
	forgeRecord(t, rdb, "dead-host:1:0000", rescueQueue, -time.Second, ids...)

	m := testMetrics(t)
	runWorker(t, Config{Queue: rdb, Policy: p, Metrics: m})
	requireKeysGone(t, rdb, 20*time.Second, "loop:once")
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(m.rescueSkippedTotal.WithLabelValues(rescueQueue, "max_rescues")) == 1
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, 1.0, testutil.ToFloat64(m.rescuedTotal.WithLabelValues(rescueQueue)))
	require.Equal(t, "active", taskState(t, rdb, rescueQueue, ids[1]), "left to asynq's lease recovery")
	require.Equal(t, 1, CountExisting(t, rdb, "loop:many"))
}

// A task rescued from a dead worker and taken by a second worker that dies
// too is rescued again at once. The first worker's lapsed record is kept for
// a minute and still claims the task; the claim of the record that lapsed
// last is the one that counts, whatever order HGETALL returns them in.
func TestRescueAgainAfterSecondCrash(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	rdb := srv.NewClient()
	ctx := context.Background()
	// Small hashes keep insertion order: the stale claim comes last.
	require.NoError(t, rdb.ConfigSet(ctx, "hash-max-listpack-value", "100000").Err())
	p := rescuePolicy(t)
	SetKeys(t, rdb, "twice:1")
	z := startZombie(t, rdb, rescueQueue, 1)
	id := enqueueKeys(t, rdb, p, "twice:1")[0]
	z.take(t, 1)
	// First worker A died running it and was rescued from; B took it and
	// died too, after its heartbeat listed it.
	require.NoError(t, rdb.HSet(ctx, asynqTaskKey(rescueQueue, id), rescuesField, 1, rescuedFromField, "twice-a#7").Err())
	forgeRecord(t, rdb, "twice-b", rescueQueue, -time.Second, id)
	forgeRecord(t, rdb, "twice-a", rescueQueue, -5*time.Second, id)

	m := testMetrics(t)
	runWorker(t, Config{Queue: rdb, Policy: p, Metrics: m})
	requireKeysGone(t, rdb, 10*time.Second, "twice:1")
	require.Equal(t, 1.0, testutil.ToFloat64(m.rescuedTotal.WithLabelValues(rescueQueue)))
}

// A task rescued from a dead worker and taken by a second worker that died
// before its heartbeat listed it is claimed only by the first worker's stale
// record: it counts as claimed by no one, and is rescued as such.
func TestRescueTaskOnlyAStaleRecordClaims(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	p := rescuePolicy(t)
	SetKeys(t, rdb, "stale:1")
	z := startZombie(t, rdb, rescueQueue, 1)
	id := enqueueKeys(t, rdb, p, "stale:1")[0]
	z.take(t, 1)
	require.NoError(t, rdb.HSet(ctx, asynqTaskKey(rescueQueue, id), rescuesField, 1, rescuedFromField, "stale-a#7").Err())
	forgeRecord(t, rdb, "stale-a", rescueQueue, -time.Second, id)

	m := testMetrics(t)
	runWorker(t, Config{Queue: rdb, Policy: p, Metrics: m})
	requireKeysGone(t, rdb, 20*time.Second, "stale:1")
	require.Equal(t, 1.0, testutil.ToFloat64(m.rescuedTotal.WithLabelValues(rescueQueue)))
}

// A live worker's tasks are never taken, however long they run: its
// heartbeats claim them. Two workers hold tasks on a cache that never
// answers, for many heartbeat timeouts.
func TestRescueLeavesLiveWorkersTasksAlone(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	p := rescuePolicy(t)
	cache, pause, unpause := pausableCache(t)
	keys := []string{"live:1", "live:2", "live:3", "live:4", "live:5", "live:6"}
	SetKeys(t, cache, keys...)
	pause()
	ma, mb := testMetrics(t), testMetrics(t)
	runWorker(t, Config{Queue: rdb, Cache: cache, Policy: p, Metrics: ma})
	runWorker(t, Config{Queue: rdb, Cache: cache, Policy: p, Metrics: mb})
	ids := enqueueKeys(t, rdb, p, keys...)
	require.Eventually(t, func() bool {
		for _, id := range ids {
			if taskState(t, rdb, rescueQueue, id) != "active" {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
	deadline := time.Now().Add(10 * testHeartbeatTimeout)
	for time.Now().Before(deadline) {
		for _, id := range ids {
			require.Equal(t, "active", taskState(t, rdb, rescueQueue, id), "a live worker's task was taken from it")
		}
		time.Sleep(testHeartbeat)
	}
	unpause()
	requireKeysGone(t, cache, 10*time.Second, keys...)
	rescued := testutil.ToFloat64(ma.rescuedTotal.WithLabelValues(rescueQueue)) + testutil.ToFloat64(mb.rescuedTotal.WithLabelValues(rescueQueue))
	require.Zero(t, rescued)
	require.Zero(t, testutil.ToFloat64(ma.deadWorkersTotal)+testutil.ToFloat64(mb.deadWorkersTotal))
}

// A graceful shutdown removes the worker's record and hands the rescuer role
// on: nothing is rescued, asynq requeued the unfinished tasks itself.
func TestShutdownRemovesHeartbeatAndHandsOverRescuer(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	p := rescuePolicy(t)
	w, err := New(Config{Queue: rdb, Policy: p, Logger: quiet(), HeartbeatInterval: testHeartbeat, HeartbeatTimeout: testHeartbeatTimeout})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	require.Eventually(t, func() bool {
		return rdb.HLen(ctx, fleetWorkersKey).Val() == 1 && rdb.Exists(ctx, fleetRescuerKey).Val() == 1
	},
		10*time.Second, 5*time.Millisecond)
	stop()
	require.NoError(t, <-done)
	require.Zero(t, rdb.HLen(ctx, fleetWorkersKey).Val(), "a stopped worker's record must go")
	require.Zero(t, rdb.Exists(ctx, fleetRescuerKey).Val(), "a stopped worker must give up the rescuer role")

	m := testMetrics(t)
	runWorker(t, Config{Queue: rdb, Policy: p, Metrics: m})
	require.Eventually(t, func() bool { return rdb.Exists(ctx, fleetRescuerKey).Val() == 1 }, 10*time.Second, 5*time.Millisecond)
	require.Zero(t, testutil.ToFloat64(m.deadWorkersTotal))
}

// requireKeysGone waits up to d until none of keys exists.
func requireKeysGone(t *testing.T, rdb redis.UniversalClient, d time.Duration, keys ...string) {
	t.Helper()
	require.Eventually(t, func() bool { return CountExisting(t, rdb, keys...) == 0 }, d, 5*time.Millisecond,
		"%d of %d keys still present after %s", CountExisting(t, rdb, keys...), len(keys), d)
}

// pausableCache is a client of a private cache Redis, and funcs that block
// its writes (CLIENT PAUSE WRITE, for at most 30 s) and let them go again.
func pausableCache(t *testing.T) (c redis.UniversalClient, pause, unpause func()) {
	t.Helper()
	srv := redistest.StartServer(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: time.Minute})
	t.Cleanup(func() { _ = client.Close() })
	ctl := srv.NewClient()
	pause = func() { require.NoError(t, ctl.Do(context.Background(), "CLIENT", "PAUSE", 30000, "WRITE").Err()) }
	unpause = func() { require.NoError(t, ctl.Do(context.Background(), "CLIENT", "UNPAUSE").Err()) }
	return client, pause, unpause
}

// The rescuer's Redis layout is asynq's: its key names, the state field, the
// 30 s lease, the asynq:servers members, and where a requeued task goes. An
// asynq upgrade that changes any of it fails here.
func TestAsynqLayout(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	p := rescuePolicy(t)
	z := startZombie(t, rdb, rescueQueue, 1)
	x := enqueueKeys(t, rdb, p, "x")[0]
	require.Equal(t, x, z.take(t, 1)[0])
	y := enqueueKeys(t, rdb, p, "y")[0] // waits: the zombie is busy

	require.Equal(t, "list", rdb.Type(ctx, asynqQueueKey(rescueQueue, "active")).Val())
	require.Equal(t, []string{x}, rdb.LRange(ctx, asynqQueueKey(rescueQueue, "active"), 0, -1).Val())
	require.Equal(t, []string{y}, rdb.LRange(ctx, asynqQueueKey(rescueQueue, "pending"), 0, -1).Val())
	lease, err := rdb.ZScore(ctx, asynqQueueKey(rescueQueue, "lease"), x).Result()
	require.NoError(t, err)
	require.InDelta(t, float64(time.Now().Add(30*time.Second).Unix()), lease, 2, "asynq's lease is 30 s")
	require.Equal(t, "active", taskState(t, rdb, rescueQueue, x))
	require.Equal(t, "pending", taskState(t, rdb, rescueQueue, y))
	servers, err := rdb.ZRange(ctx, asynqServersKey, 0, -1).Result()
	require.NoError(t, err)
	require.Len(t, servers, 1)
	hp, ok := asynqServerHostPID(servers[0])
	require.True(t, ok, servers[0])
	require.Equal(t, hostname()+":"+strconv.Itoa(os.Getpid()), hp)

	// The rescue does what asynq's Requeue does: x goes to the end of
	// pending that Dequeue takes next, ahead of y.
	keys := []string{asynqQueueKey(rescueQueue, "active"), asynqQueueKey(rescueQueue, "lease"),
		asynqQueueKey(rescueQueue, "pending"), asynqTaskKey(rescueQueue, x)}
	n, err := rescueScript.Run(ctx, rdb, keys, x, 3, "w#1", "").Int()
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, x, rdb.LIndex(ctx, asynqQueueKey(rescueQueue, "pending"), -1).Val())
	require.Equal(t, "pending", taskState(t, rdb, rescueQueue, x))
	require.Zero(t, rdb.LLen(ctx, asynqQueueKey(rescueQueue, "active")).Val())
	require.ErrorIs(t, rdb.ZScore(ctx, asynqQueueKey(rescueQueue, "lease"), x).Err(), redis.Nil)
	n, err = rescueScript.Run(ctx, rdb, keys, x, 3, "w#1", "").Int()
	require.NoError(t, err)
	require.Zero(t, n, "a task no longer active is not rescued")

	// asynq's own Requeue (a graceful shutdown) puts a task in the same place.
	z.stop() // its Done of x finds nothing: x was rescued
	require.Equal(t, "pending", taskState(t, rdb, rescueQueue, x))
	z2 := startZombie(t, rdb, rescueQueue, 1)
	require.Equal(t, x, z2.take(t, 1)[0], "Dequeue takes the rescued task first")
	z2.srv.Shutdown()
	require.Equal(t, x, rdb.LIndex(ctx, asynqQueueKey(rescueQueue, "pending"), -1).Val())
	require.Equal(t, "pending", taskState(t, rdb, rescueQueue, x))

	// A real worker runs both to completion.
	SetKeys(t, rdb, "x", "y")
	runWorker(t, Config{Queue: rdb, Policy: p})
	requireKeysGone(t, rdb, 10*time.Second, "x", "y")
	require.Eventually(t, func() bool {
		return taskState(t, rdb, rescueQueue, x) == "gone" && taskState(t, rdb, rescueQueue, y) == "gone"
	},
		10*time.Second, 5*time.Millisecond)
}

// The rescue script refuses a task already rescued from the same lapsed
// record (a stale claim of a task that runs again on a live worker).
func TestRescueScriptRefusesStaleClaim(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	id := "task-1"
	keys := []string{asynqQueueKey(rescueQueue, "active"), asynqQueueKey(rescueQueue, "lease"),
		asynqQueueKey(rescueQueue, "pending"), asynqTaskKey(rescueQueue, id)}
	activate := func() {
		require.NoError(t, rdb.LPush(ctx, keys[0], id).Err())
		require.NoError(t, rdb.ZAdd(ctx, keys[1], redis.Z{Score: 1, Member: id}).Err())
		require.NoError(t, rdb.LRem(ctx, keys[2], 0, id).Err())
		require.NoError(t, rdb.HSet(ctx, keys[3], "state", "active").Err())
	}
	run := func(from string) int {
		n, err := rescueScript.Run(ctx, rdb, keys, id, 3, from, "100").Int()
		require.NoError(t, err)
		return n
	}
	activate()
	require.Equal(t, 1, run("dead#7"))
	activate() // a live worker took it again
	require.Equal(t, -2, run("dead#7"), "the same lapsed record claims it: stale")
	require.Equal(t, 2, run("dead#9"), "the worker came back and died again: a new claim")
	activate()
	require.NoError(t, rdb.ZAdd(ctx, keys[1], redis.Z{Score: 101, Member: id}).Err())
	require.Zero(t, run(unclaimedFrom), "unclaimed with a young lease: a worker took it a moment ago")
	require.NoError(t, rdb.ZAdd(ctx, keys[1], redis.Z{Score: 100, Member: id}).Err())
	require.Equal(t, 3, run(unclaimedFrom))
	activate()
	require.Equal(t, -1, run("other#1"), "rescued 3 times: left to asynq")
	require.Equal(t, "active", rdb.HGet(ctx, keys[3], "state").Val())
	require.Equal(t, []string{id}, rdb.LRange(ctx, keys[0], 0, -1).Val())
}

func TestInflightWindows(t *testing.T) {
	t.Parallel()
	f := newInflight()
	f.begin("off", "q")() // not enabled: nothing recorded
	_, ok := f.startedRecently("off")
	require.False(t, ok)

	f.enable(true)
	endA := f.begin("a", "q1")
	f.begin("b", "q2")()
	require.Equal(t, map[string][]string{"q1": {"a"}, "q2": {"b"}}, f.snapshot(), "b just finished: still claimed once")
	q, ok := f.startedRecently("b")
	require.True(t, ok, "started before the last snapshot: still remembered")
	require.Equal(t, "q2", q)
	f.begin("c", "q1")()
	require.ElementsMatch(t, []string{"a", "c"}, f.snapshot()["q1"])
	_, ok = f.startedRecently("b")
	require.False(t, ok, "two snapshots ago: forgotten")
	_, ok = f.startedRecently("c")
	require.True(t, ok)
	// A failed heartbeat undoes its rotation: d, started before it, waits
	// for the next reply.
	f.begin("d", "q1")()
	f.snapshot()
	f.unsnapshot()
	f.snapshot()
	_, ok = f.startedRecently("d")
	require.True(t, ok, "a failed heartbeat must not lose a started task")
	endA()
	require.Equal(t, map[string][]string{"q1": {"a"}}, f.snapshot())
	require.Empty(t, f.snapshot())
	f.enable(false)
	_, ok = f.startedRecently("c")
	require.False(t, ok)
}

// An idle worker writes every other heartbeat; one that has anything to
// claim, holds the rescuer role, or whose last beat failed writes every
// one, and so does a worker whose timeout leaves no room for a skipped beat.
func TestIdleWorkerRestsEveryOtherHeartbeat(t *testing.T) {
	t.Parallel()
	mk := func(timeoutBeats time.Duration) *heartbeat {
		hb := &heartbeat{interval: 500 * time.Millisecond, timeout: timeoutBeats * 500 * time.Millisecond,
			tasks: newInflight(), now: time.Now}
		hb.tasks.enable(true)
		hb.succeeded()
		return hb
	}
	ticks := func(hb *heartbeat, n int) (beats int) {
		for range n {
			if !hb.rest() {
				beats++
			}
		}
		return beats
	}
	hb := mk(4)
	require.Equal(t, 5, ticks(hb, 10), "idle: every other tick")

	end := hb.tasks.begin("a", "q")
	require.Equal(t, 10, ticks(hb, 10), "running a task")
	end()
	require.Equal(t, 10, ticks(hb, 10), "a finished task not yet claimed")
	hb.tasks.snapshot() // claims it; it is still in the started windows
	require.Equal(t, 10, ticks(hb, 10), "a task started in the window before last")
	hb.tasks.snapshot()
	hb.tasks.snapshot()
	require.Equal(t, 5, ticks(hb, 10), "idle again")

	hb.acks = []string{"x"}
	require.Equal(t, 10, ticks(hb, 10), "a redelivery to acknowledge")
	hb.acks = nil

	hb.rescuer.Store(true)
	require.Equal(t, 10, ticks(hb, 10), "the rescuer")
	hb.rescuer.Store(false)

	hb.failed()
	require.Equal(t, 10, ticks(hb, 10), "after a failed beat")
	hb.succeeded()

	require.Equal(t, 10, ticks(mk(3), 10), "a timeout of 3 intervals has no room for a skipped beat")
}

func TestParseRecord(t *testing.T) {
	t.Parallel()
	r, err := parseRecord("w1", `1700000000123 42 {"host":"h","pid":7,"queues":["q"],"tasks":{"q":["a","b"]},"timeout_ms":2000}`)
	require.NoError(t, err)
	require.NoError(t, r.bad)
	require.Equal(t, int64(1700000000123), r.expiry)
	require.Equal(t, uint64(42), r.seq)
	require.Equal(t, recordBody{Host: "h", PID: 7, Queues: []string{"q"}, Tasks: map[string][]string{"q": {"a", "b"}}, TimeoutMS: 2000}, r.body)

	r, err = parseRecord("w2", `1700000000123 1 {not json`)
	require.NoError(t, err, "the prefix parses")
	require.Error(t, r.bad)
	for _, v := range []string{"", "123", "123 4", "x 4 {}", "123 -1 {}"} {
		_, err := parseRecord("w3", v)
		require.Error(t, err, "%q", v)
	}
}

func TestAsynqServerHostPID(t *testing.T) {
	t.Parallel()
	for member, want := range map[string]string{
		"asynq:servers:{web-1:4242:3f1c9d7e-0000-4000-8000-000000000000}": "web-1:4242",
		"asynq:servers:{a:b:1:uuid}":                                      "a:b:1",
		"asynq:servers:{host:notapid:uuid}":                               "",
		"asynq:servers:{nouuid}":                                          "",
		"asynq:workers:{h:1:u}":                                           "",
		"asynq:servers:{h:1:u":                                            "",
	} {
		got, ok := asynqServerHostPID(member)
		require.Equal(t, want != "", ok, member)
		require.Equal(t, want, got, member)
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add("w", `1700000000123 42 {"host":"h","pid":7,"queues":["q"],"tasks":{"q":["a"]},"timeout_ms":2000}`)
	f.Add("w", "1 1 {}")
	f.Add("w", "1 1")
	f.Fuzz(func(t *testing.T, id, v string) {
		r, err := parseRecord(id, v)
		if err != nil {
			return
		}
		require.Equal(t, id, r.id)
	})
}

func TestConfigValidateHeartbeat(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for name, c := range map[string]Config{
		"negative interval":     {HeartbeatInterval: -time.Second},
		"negative timeout":      {HeartbeatTimeout: -time.Second},
		"negative rescues":      {MaxRescues: -1},
		"timeout below 2 beats": {HeartbeatInterval: time.Second, HeartbeatTimeout: 1500 * time.Millisecond},
		"timeout below default": {HeartbeatTimeout: 900 * time.Millisecond},
	} {
		c.Queue = rdb
		require.Error(t, c.Validate(), name)
	}
	ok := Config{Queue: rdb, HeartbeatInterval: time.Second}
	require.NoError(t, ok.Validate())
	d := ok.withDefaults()
	require.Equal(t, 4*time.Second, d.HeartbeatTimeout, "the default timeout is 4 heartbeats")
	require.Equal(t, DefaultMaxRescues, d.MaxRescues)
}
