package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/queuestats"
	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

// shardStack is a worker on a queue Redis (a cluster or a standalone
// database) whose policy has one class in 3 shards, and the CLI's
// environment for it. The cache is the queue Redis, through a client
// whose UNLINKs fail while fault is on.
type shardStack struct {
	queue  redis.UniversalClient
	policy *keyspec.Policy
	class  *keyspec.Class
	env    map[string]string
	insp   *asynq.Inspector
	fault  *unlinkFault
}

func startShardStack(t *testing.T, queue, cache redis.UniversalClient, url, queueName string) *shardStack {
	t.Helper()
	path := writePolicy(t, fmt.Sprintf(`version: 1
classes:
  standard: {ttl: 10m, max_retry: 0, queue: %s, shards: 3}
`, queueName))
	policy, err := keyspec.Load(path)
	require.NoError(t, err)
	fault := &unlinkFault{}
	cache.AddHook(fault)
	w, err := worker.New(worker.Config{Queue: queue, Cache: cache, Policy: policy,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), PollInterval: time.Millisecond,
		ShutdownTimeout: time.Second, DeadLetterSweep: 20 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	s := &shardStack{queue: queue, policy: policy, class: policy.Classes["standard"],
		env:  map[string]string{envRedisURL: url, envPolicy: path},
		insp: asynq.NewInspectorFromRedisClient(queue), fault: fault}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		for _, q := range policy.Queues() { // the cluster is shared
			_ = s.insp.DeleteQueue(q, true)
		}
	})
	return s
}

func (s *shardStack) run(t *testing.T, args ...string) string {
	t.Helper()
	r := invoke(t, s.env, "", args...)
	require.Equal(t, exitOK, r.code, "invalidator %v: %s", args, r.stderr)
	return r.stdout
}

// keyPerShard returns one key of prefix for each shard, in shard order.
func (s *shardStack) keyPerShard(prefix string) []string {
	shards := s.class.Queues()
	keys := make([]string, len(shards))
	for i, left := 0, len(shards); left > 0; i++ {
		k := fmt.Sprintf("%s:%d", prefix, i)
		if at := slices.Index(shards, s.class.QueueFor(k)); keys[at] == "" {
			keys[at] = k
			left--
		}
	}
	return keys
}

// waitDrained waits until no shard holds a pending, active, scheduled or
// retrying task.
func (s *shardStack) waitDrained(t *testing.T, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, q := range s.policy.Queues() {
			qi, err := s.insp.GetQueueInfo(q)
			if err != nil {
				continue // a shard nothing went to yet
			}
			if qi.Pending+qi.Active+qi.Scheduled+qi.Retry > 0 {
				return false
			}
		}
		return true
	}, within, 10*time.Millisecond, "the shards never drained")
}

func setKeys(t *testing.T, rdb redis.UniversalClient, keys []string) {
	t.Helper()
	ctx := context.Background()
	for start := 0; start < len(keys); start += 5000 {
		pipe := rdb.Pipeline()
		for _, k := range keys[start:min(start+5000, len(keys))] {
			pipe.Set(ctx, k, "v", 0)
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
	}
}

func countKeys(t *testing.T, rdb redis.UniversalClient, keys []string) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	for start := 0; start < len(keys); start += 5000 {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.IntCmd, 0, 5000)
		for _, k := range keys[start:min(start+5000, len(keys))] {
			cmds = append(cmds, pipe.Exists(ctx, k))
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
		for _, c := range cmds {
			n += int(c.Val())
		}
	}
	return n
}

// A sharded class on the 3-master cluster: its shards live on the three
// masters, the enqueue commands and the worker use them, and the dead
// letter and `dead retry` work across them.
func TestShardedClassOnCluster(t *testing.T) {
	t.Parallel()
	cluster := redistest.Cluster(t)
	cache := redistest.Cluster(t)
	p := redistest.Prefix(t)
	url := "redis+cluster://" + strings.Join(redistest.ClusterAddrs(t), ",")
	s := startShardStack(t, cluster, cache, url, p+"-std")
	testShardedClass(t, s, cluster, p)

	t.Run("shards on every master", func(t *testing.T) {
		ctx := context.Background()
		masters := map[string]bool{}
		for _, q := range s.class.Queues() {
			node, err := cluster.MasterForKey(ctx, "asynq:{"+q+"}:pending")
			require.NoError(t, err)
			masters[node.Options().Addr] = true
		}
		require.Len(t, masters, 3, "shards %v", s.class.Queues())
	})
}

// The same on a standalone queue Redis: shards are plain queues there.
func TestShardedClassStandalone(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	cache := redis.NewClient(db.Client.Options())
	t.Cleanup(func() { _ = cache.Close() })
	s := startShardStack(t, db.Client, cache, db.URL, "invalidator-standard")
	testShardedClass(t, s, db.Client, redistest.Prefix(t))
}

func testShardedClass(t *testing.T, s *shardStack, rdb redis.UniversalClient, p string) {
	t.Run("enqueue picks a shard by the first key", func(t *testing.T) {
		keys := s.keyPerShard(p + ":pick")
		setKeys(t, rdb, keys)
		for i, k := range keys {
			var res enqueueResult
			require.NoError(t, json.Unmarshal([]byte(s.run(t, "enqueue", "keys", k, "--json")), &res))
			require.Equal(t, s.class.Queues()[i], res.Queue)
			require.NotNil(t, res.QueueServed)
			require.True(t, *res.QueueServed, "the worker serves every shard")
		}
		require.Eventually(t, func() bool { return countKeys(t, rdb, keys) == 0 }, 15*time.Second, 5*time.Millisecond)
		// The worker took each task from the shard it was sent to (a
		// finished task is gone, so ask the shards' counters).
		for _, q := range s.class.Queues() {
			require.Eventually(t, func() bool {
				qi, err := s.insp.GetQueueInfo(q)
				return err == nil && qi.Processed >= 1
			}, 15*time.Second, 5*time.Millisecond, "shard %s ran no task", q)
		}

		var rows []queueStats
		require.NoError(t, json.Unmarshal([]byte(s.run(t, "queues", "--json")), &rows))
		var names []string
		for _, r := range rows {
			names = append(names, r.Queue)
		}
		for _, q := range s.class.Queues() {
			require.Contains(t, names, q)
		}
	})

	t.Run("dead letter and dead retry across shards", func(t *testing.T) {
		keys := s.keyPerShard(p + ":dead")
		setKeys(t, rdb, keys)
		s.fault.on.Store(true)
		var ids []string
		for _, k := range keys {
			ids = append(ids, strings.TrimSpace(s.run(t, "enqueue", "keys", k)))
		}
		for i, id := range ids {
			q := s.class.Queues()[i]
			require.Eventually(t, func() bool {
				ti, err := s.insp.GetTaskInfo(q, id)
				if err != nil || ti.State != asynq.TaskStateArchived {
					return false
				}
				_, ok, err := worker.ReadDeadTask(context.Background(), s.queue, q, id)
				require.NoError(t, err)
				return ok
			}, 15*time.Second, 2*time.Millisecond, "task %s never dead-lettered on %s", id, q)
		}
		s.fault.on.Store(false)

		var rows []deadTask
		require.NoError(t, json.Unmarshal([]byte(s.run(t, "dead", "list", "--json")), &rows))
		got := map[string]string{}
		for _, r := range rows {
			got[r.ID] = r.Queue
		}
		for i, id := range ids {
			require.Equal(t, s.class.Queues()[i], got[id], "dead list shows task %s on its shard", id)
		}
		require.Equal(t, 3, countKeys(t, rdb, keys))

		// The exporter's gauges, per shard.
		c, err := queuestats.New(queuestats.Config{Client: s.queue, Queues: s.class.Queues(), MinInterval: -1})
		require.NoError(t, err)
		reg := prometheus.NewRegistry()
		require.NoError(t, reg.Register(c))
		families, err := reg.Gather()
		require.NoError(t, err)
		gauge := func(name, queue, state string) float64 {
			for _, f := range families {
				if f.GetName() != name {
					continue
				}
				for _, m := range f.GetMetric() {
					labels := map[string]string{}
					for _, l := range m.GetLabel() {
						labels[l.GetName()] = l.GetValue()
					}
					if labels["queue"] == queue && (state == "" || labels["state"] == state) {
						return m.GetGauge().GetValue()
					}
				}
			}
			t.Fatalf("no %s{queue=%q,state=%q}", name, queue, state)
			return 0
		}
		for _, q := range s.class.Queues() {
			require.Equal(t, 1.0, gauge("invalidator_queue_tasks", q, "archived"), q)
			require.Equal(t, 1.0, gauge("invalidator_dead_letter_recorded_tasks", q, ""), q)
		}

		require.Contains(t, s.run(t, "dead", "retry", "--all"), "3 tasks put back to run")
		require.Eventually(t, func() bool { return countKeys(t, rdb, keys) == 0 }, 15*time.Second, 5*time.Millisecond)
		require.Contains(t, s.run(t, "dead", "list"), "the dead letter is empty")
	})

	t.Run("100k single-key invalidations leave no key behind", func(t *testing.T) {
		const n, producers = 100_000, 32
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("%s:bulk:%d", p, i)
		}
		setKeys(t, rdb, keys)
		client, err := enqueue.New(s.queue, enqueue.Config{Policy: s.policy, Coalesce: &enqueue.CoalesceConfig{Window: time.Millisecond}})
		require.NoError(t, err)
		next := make(chan string, producers)
		var wg sync.WaitGroup
		for range producers {
			wg.Go(func() {
				for k := range next {
					_, err := client.DeleteKeys(context.Background(), k)
					require.NoError(t, err)
				}
			})
		}
		for _, k := range keys {
			next <- k
		}
		close(next)
		wg.Wait()
		require.NoError(t, client.Close())
		s.waitDrained(t, 3*time.Minute)
		require.Zero(t, countKeys(t, rdb, keys))
		for _, q := range s.class.Queues() {
			qi, err := s.insp.GetQueueInfo(q)
			require.NoError(t, err)
			require.Positive(t, qi.Processed, "shard %s ran tasks", q)
			require.Zero(t, qi.Archived, "shard %s dead-lettered nothing", q)
		}
	})
}

// bench lag and throughput run on a redis+cluster:// queue Redis, sharded
// or not, and delete their queues at the end, on a cluster as on a
// standalone server.
func TestBenchOnClusterDeletesItsQueues(t *testing.T) {
	t.Parallel()
	cluster := redistest.Cluster(t)
	url := "redis+cluster://" + strings.Join(redistest.ClusterAddrs(t), ",")
	db := redistest.NewDB(t)
	for _, tc := range []struct {
		url  string
		rdb  redis.UniversalClient
		args []string
	}{
		{url, cluster, []string{"bench", "throughput", "--keys", "600", "--keys-per-call", "3", "--producers", "4", "--shards", "3", "--json"}},
		{url, cluster, []string{"bench", "lag", "--rate", "200", "--duration", "500ms", "--json"}},
		{db.URL, db.Client, []string{"bench", "throughput", "--keys", "300", "--producers", "2", "--coalesce", "1ms", "--shards", "2", "--json"}},
	} {
		r := invoke(t, map[string]string{envRedisURL: tc.url}, "", tc.args...)
		require.Equal(t, exitOK, r.code, "%v: %s", tc.args, r.stderr)
		var res map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
		require.Positive(t, res["keys_per_sec"], tc.args)
		queues, err := asynq.NewInspectorFromRedisClient(tc.rdb).Queues()
		require.NoError(t, err)
		for _, q := range queues {
			require.False(t, strings.HasPrefix(q, "invalidator-bench"), "%v left queue %s registered", tc.args, q)
		}
	}
}
