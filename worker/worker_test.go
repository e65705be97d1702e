package worker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

const testPolicy = `
version: 1
default_class: standard
classes:
  standard: {ttl: 10m, jitter: 0.1, max_retry: 3, timeout: 30s, backoff_base: 10ms, backoff_max: 50ms}
  critical: {ttl: 1m, max_retry: 1, timeout: 10s, backoff_base: 10ms, backoff_max: 20ms}
families:
  user_profile:
    template: "user:{id}:profile"
    class: standard
  product_page:
    template: "product_page:{id}:{page}"
    class: standard
    hash_tag: id
  feed:
    template: "feed:{user}"
    class: critical
    strategy: version
    hash_tag: user
`

type testBundle struct {
	rdb    redis.UniversalClient
	policy *keyspec.Policy
	client *enqueue.Client
	insp   *asynq.Inspector
}

func setup(t testing.TB) *testBundle {
	t.Helper()
	rdb := redistest.Client(t)
	policy, err := keyspec.Parse("test-policy.yaml", []byte(testPolicy))
	require.NoError(t, err)
	client, err := enqueue.New(rdb, enqueue.Config{Policy: policy})
	require.NoError(t, err)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	return &testBundle{rdb: rdb, policy: policy, client: client, insp: insp}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startWorker runs a worker until the test ends.
func (b *testBundle) startWorker(t testing.TB, mutate func(*worker.Config)) {
	t.Helper()
	cfg := worker.Config{Queue: b.rdb, Policy: b.policy, Logger: testLogger(t), PollInterval: time.Millisecond,
		RetryCheckInterval: 100 * time.Millisecond, ShutdownTimeout: 2 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	w, err := worker.New(cfg)
	require.NoError(t, err)
	worker.RunWorker(t, w)
}

// requireGone waits until none of keys exists. Keys are checked one by one,
// since a multi-key EXISTS would cross slots on a cluster.
func requireGone(t *testing.T, rdb redis.UniversalClient, keys ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for count(t, rdb, keys...) > 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	require.Zero(t, count(t, rdb, keys...), "keys still present of %d, e.g. %q", len(keys), keys[0])
}

// Shared with the internal tests (keys_test.go).
var (
	count = worker.CountExisting
	set   = worker.SetKeys
)

func TestDeleteKeysBinarySafe(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	binary := "k\x00\xffend"
	sibling := "k\x00\xfeend" // differs only in one byte: must survive
	set(t, b.rdb, "a", "b", "c", binary, sibling)
	b.startWorker(t, nil)

	ids, err := b.client.DeleteKeys(ctx, "a", "b", "c", binary)
	require.NoError(t, err)
	require.Len(t, ids, 1)
	requireGone(t, b.rdb, "a", "b", "c", binary)
	require.Equal(t, int64(1), b.rdb.Exists(ctx, sibling).Val(), "a key differing only in 0xfe/0xff was deleted")
}

func TestDeleteKeysManyTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	keys := make([]string, 2500)
	for i := range keys {
		keys[i] = fmt.Sprintf("bulk:%d", i)
	}
	set(t, b.rdb, keys...)
	b.startWorker(t, func(c *worker.Config) { c.DeleteChunk = 7 }) // odd chunk: exercises the tail
	ids, err := b.client.DeleteKeys(context.Background(), keys...)
	require.NoError(t, err)
	require.Greater(t, len(ids), 1, "a call larger than one task must be split")
	requireGone(t, b.rdb, keys...)
}

func TestDeleteFamilyExact(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var family, others []string
	for i := range 300 {
		family = append(family, fmt.Sprintf("product_page:{42}:%d", i))
		others = append(others, fmt.Sprintf("product_page:{43}:%d", i), fmt.Sprintf("product_page:{420}:%d", i))
	}
	others = append(others, "product_page:42:1", "user:42:profile")
	set(t, b.rdb, family...)
	set(t, b.rdb, others...)
	b.startWorker(t, func(c *worker.Config) { c.ScanCount = 50 })

	id, err := b.client.DeleteFamily(ctx, "product_page", map[string]string{"id": "42"})
	require.NoError(t, err)
	requireGone(t, b.rdb, family...)
	require.Equal(t, len(others), count(t, b.rdb, others...), "keys outside the family were deleted")
	// The finished scan's counts stay readable for a while, then expire.
	var p worker.ScanProgress
	require.Eventually(t, func() bool {
		p, err = worker.FamilyDeleteProgress(ctx, b.rdb, id)
		return err == nil && p.Finished
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, int64(len(family)), p.Deleted)
	require.Positive(t, b.rdb.PTTL(ctx, "invalidator:scan:{"+id+"}").Val(), "a finished checkpoint must expire")
}

func TestDeleteFamilyWildcardValueIsLiteral(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	set(t, b.rdb, "user:*:profile", "user:42:profile", "user:?:profile", "user:[a]:profile", "user:a:profile")
	b.startWorker(t, nil)

	_, err := b.client.DeleteFamily(ctx, "user_profile", map[string]string{"id": "*"})
	require.NoError(t, err)
	requireGone(t, b.rdb, "user:*:profile")
	_, err = b.client.DeleteFamily(ctx, "user_profile", map[string]string{"id": "[a]"})
	require.NoError(t, err)
	requireGone(t, b.rdb, "user:[a]:profile")
	require.Equal(t, int64(3), b.rdb.Exists(ctx, "user:42:profile", "user:?:profile", "user:a:profile").Val())
}

func TestBumpVersionSurvivesLostVersionKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	fam, err := b.policy.Family("feed")
	require.NoError(t, err)
	vkey, err := fam.VersionKey(map[string]string{"user": "7"})
	require.NoError(t, err)
	b.startWorker(t, nil)

	version := func() int64 {
		v, err := b.rdb.Get(ctx, vkey).Int64()
		if err != nil {
			return 0
		}
		return v
	}
	bump := func() {
		before := version()
		_, err := b.client.BumpVersion(ctx, "feed", map[string]string{"user": "7"})
		require.NoError(t, err)
		require.Eventually(t, func() bool { return version() > before }, 10*time.Second, time.Millisecond)
	}
	bump()
	first := version()
	require.Positive(t, b.rdb.PTTL(ctx, vkey).Val(), "the version key must carry a TTL")

	// A version that was set far ahead (clock skew, manual fix) still only goes up.
	require.NoError(t, b.rdb.Set(ctx, vkey, first+1_000_000, 0).Err())
	bump()
	require.Equal(t, first+1_000_001, version())

	// Lost to eviction: the next version still beats the first one.
	require.NoError(t, b.rdb.Del(ctx, vkey).Err())
	bump()
	require.Greater(t, version(), first)
}

func TestPoisonTasksAreArchivedAndWorkerGoesOn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	queue := "invalidator-standard"
	aq := asynq.NewClientFromRedisClient(b.rdb)
	garbage, err := aq.EnqueueContext(ctx, asynq.NewTask("invalidate:keys", []byte("not a payload")), asynq.Queue(queue))
	require.NoError(t, err)
	foreign, err := aq.EnqueueContext(ctx, asynq.NewTask("email:send", []byte("{}")), asynq.Queue(queue))
	require.NoError(t, err)
	set(t, b.rdb, "after-poison")
	b.startWorker(t, nil)
	_, err = b.client.DeleteKeys(ctx, "after-poison")
	require.NoError(t, err)
	requireGone(t, b.rdb, "after-poison")

	for id, want := range map[string]string{garbage.ID: "decode", foreign.ID: "unknown task kind"} {
		require.Eventually(t, func() bool {
			ti, err := b.insp.GetTaskInfo(queue, id)
			return err == nil && ti.State == asynq.TaskStateArchived
		}, 10*time.Second, 5*time.Millisecond)
		ti, err := b.insp.GetTaskInfo(queue, id)
		require.NoError(t, err)
		require.Contains(t, ti.LastErr, "poison task")
		require.Contains(t, ti.LastErr, want)
		require.Zero(t, ti.Retried, "poison must not be retried")
	}
}

func TestUnknownFamilyIsPoison(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	// The producer knows a family the worker's policy does not (e.g. a newer policy).
	producerPolicy, err := keyspec.Parse("newer.yaml", []byte(testPolicy+`
  brand_new:
    template: "new:{id}"
    class: standard
`))
	require.NoError(t, err)
	producer, err := enqueue.New(b.rdb, enqueue.Config{Policy: producerPolicy})
	require.NoError(t, err)
	id, err := producer.DeleteFamily(ctx, "brand_new", map[string]string{"id": "1"})
	require.NoError(t, err)
	b.startWorker(t, nil)
	require.Eventually(t, func() bool {
		ti, err := b.insp.GetTaskInfo("invalidator-standard", id)
		return err == nil && ti.State == asynq.TaskStateArchived && strings.Contains(ti.LastErr, "brand_new")
	}, 10*time.Second, 5*time.Millisecond)
}

func TestFailuresRetryThenDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	// A target no worker has: it fails on every attempt, but is not poison.
	c, err := enqueue.New(b.rdb, enqueue.Config{Policy: b.policy, Target: "elsewhere"})
	require.NoError(t, err)
	ids, err := c.With(enqueue.MaxRetry(2)).DeleteKeys(ctx, "x")
	require.NoError(t, err)
	b.startWorker(t, nil)
	require.Eventually(t, func() bool {
		ti, err := b.insp.GetTaskInfo("invalidator-standard", ids[0])
		return err == nil && ti.State == asynq.TaskStateArchived
	}, 20*time.Second, 10*time.Millisecond)
	ti, err := b.insp.GetTaskInfo("invalidator-standard", ids[0])
	require.NoError(t, err)
	require.Equal(t, 2, ti.Retried, "the task must use its retries before the dead letter")
	require.Contains(t, ti.LastErr, `unknown cache target "elsewhere"`)
}

func TestNamedTarget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	other := redistest.Client(t)
	set(t, other, "k")
	set(t, b.rdb, "k")
	c, err := enqueue.New(b.rdb, enqueue.Config{Policy: b.policy, Target: "sessions"})
	require.NoError(t, err)
	b.startWorker(t, func(cfg *worker.Config) { cfg.Targets = map[string]redis.UniversalClient{"sessions": other} })
	_, err = c.DeleteKeys(ctx, "k")
	require.NoError(t, err)
	requireGone(t, other, "k")
	require.Equal(t, int64(1), b.rdb.Exists(ctx, "k").Val(), "the default cache must not be touched")
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	_, err := worker.New(worker.Config{})
	require.ErrorContains(t, err, "Config.Queue")
	rdb := redistest.Client(t)
	_, err = worker.New(worker.Config{Queue: rdb, Concurrency: -1})
	require.ErrorContains(t, err, "Concurrency")
	_, err = worker.New(worker.Config{Queue: rdb, Targets: map[string]redis.UniversalClient{"x": nil}})
	require.ErrorContains(t, err, `Targets["x"]`)
}

// Validate is the one rule for each setting: zero is the default, and what
// else a value may be is decided here, for the CLI's flags too
// (*ConfigError names the field). Settings are checked before Queue, so a
// caller can check them before it connects.
func TestConfigValidateNamesTheField(t *testing.T) {
	t.Parallel()
	for field, c := range map[string]worker.Config{
		"FamilyRateLimit": {FamilyRateLimit: math.NaN()},
		"AuditRate":       {AuditRate: math.Inf(1)},
		"SafetyPoll":      {SafetyPoll: 500 * time.Millisecond}, // waits count whole seconds
		"PollInterval":    {PollInterval: -time.Millisecond},
		"Queue":           {},
	} {
		var ce *worker.ConfigError
		require.ErrorAs(t, c.Validate(), &ce, field)
		require.Equal(t, field, ce.Field)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	require.NoError(t, worker.Config{Queue: rdb}.Validate(), "zero values are the defaults")
	require.NoError(t, worker.Config{Queue: rdb, SafetyPoll: 2 * time.Second}.Validate())
}
