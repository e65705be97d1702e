package enqueue_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

const inlinePolicyYAML = `
version: 1
default_class: standard
classes:
  standard: {ttl: 10m, max_retry: 5, timeout: 20s}
families:
  price:        {template: "price:{sku}", class: standard}
  price_shadow: {template: "shadow:{sku}", class: standard, mode: shadow}
  price_off:    {template: "off:{sku}", class: standard, mode: off}
  page:         {template: "page:{sku}:{n}", class: standard}
  feed:         {template: "feed:{sku}", class: standard, strategy: version}
events:
  product.updated:
    attributes: [id]
    invalidates:
      - {family: price, params: {sku: id}}
      - {family: price_shadow, params: {sku: id}}
      - {family: price_off, params: {sku: id}}
      - {family: page, params: {sku: id}, wildcard: [n]}
      - {family: feed, params: {sku: id}}
`

type inlineBundle struct {
	queue  *redistest.DB
	cache  redis.UniversalClient
	client *enqueue.Client
	reg    *prometheus.Registry
	insp   *asynq.Inspector
}

// setupInline makes a Client that deletes inline in cache, with a queue
// Redis of its own and no worker anywhere: whatever leaves the cache left
// it from the producer.
func setupInline(t *testing.T, cache redis.UniversalClient, coalesce *enqueue.CoalesceConfig) *inlineBundle {
	t.Helper()
	queue := redistest.NewDB(t)
	policy, err := keyspec.Parse("p.yaml", []byte(inlinePolicyYAML))
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	m, err := enqueue.NewInlineMetrics(reg)
	require.NoError(t, err)
	c, err := enqueue.New(queue.Client, enqueue.Config{
		Policy: policy, InlineDelete: cache, InlineMetrics: m, Coalesce: coalesce,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return &inlineBundle{queue: queue, cache: cache, client: c, reg: reg,
		insp: asynq.NewInspectorFromRedisClient(queue.Client)}
}

func (b *inlineBundle) queuedKeys(t *testing.T, id string) []string {
	t.Helper()
	ti, err := b.insp.GetTaskInfo("invalidator-standard", id)
	if err != nil {
		ti, err = b.insp.GetTaskInfo("default", id)
	}
	require.NoError(t, err)
	dec, err := tasks.Unmarshal(ti.Type, ti.Payload)
	require.NoError(t, err)
	return dec.(tasks.DeleteKeys).Keys
}

func setKeys(t *testing.T, c redis.UniversalClient, keys ...string) {
	t.Helper()
	for _, k := range keys {
		require.NoError(t, c.Set(t.Context(), k, "old", 0).Err())
	}
}

func requireGone(t *testing.T, c redis.UniversalClient, keys ...string) {
	t.Helper()
	for _, k := range keys {
		n, err := c.Exists(t.Context(), k).Result()
		require.NoError(t, err)
		require.Zero(t, n, "key %q is still cached", k)
	}
}

func requireCached(t *testing.T, c redis.UniversalClient, keys ...string) {
	t.Helper()
	for _, k := range keys {
		v, err := c.Get(t.Context(), k).Result()
		require.NoError(t, err, "key %q", k)
		require.Equal(t, "old", v, "key %q", k)
	}
}

func TestInlineDeleteKeysGoneBeforeAnyWorkerAndTaskStillQueued(t *testing.T) {
	t.Parallel()
	b := setupInline(t, redistest.Client(t), nil)
	keys := []string{"price:1", "price:2", "bin\xff\x00key"}
	setKeys(t, b.cache, append(keys, "price:3")...)

	ids, err := b.client.DeleteKeys(t.Context(), keys...)
	require.NoError(t, err)

	requireGone(t, b.cache, keys...)
	requireCached(t, b.cache, "price:3")
	require.Len(t, ids, 1)
	require.Equal(t, keys, b.queuedKeys(t, ids[0]), "the task is the guarantee, queued whatever the inline delete did")
	require.InDelta(t, 3, counter(t, b.reg, "invalidator_enqueue_inline_deleted_keys_total"), 0)
}

func TestInlineDeleteOnClusterGroupsBySlot(t *testing.T) {
	t.Parallel()
	cache := redistest.Cluster(t)
	b := setupInline(t, cache, nil)
	p := redistest.Prefix(t)
	// Keys on many slots (and so on every master), and two sharing a tag.
	var keys []string
	for i := range 40 {
		keys = append(keys, p+"k"+string(rune('a'+i%26))+string(rune('0'+i/26)))
	}
	keys = append(keys, p+"{tag}.a", p+"{tag}.b")
	setKeys(t, cache, keys...)

	ids, err := b.client.DeleteKeys(t.Context(), keys...)
	require.NoError(t, err, "a multi-slot UNLINK would fail with CROSSSLOT; the task must still be queued")
	requireGone(t, cache, keys...)
	require.Equal(t, keys, b.queuedKeys(t, ids[0]))
	require.Zero(t, counter(t, b.reg, "invalidator_enqueue_inline_delete_failures_total"))
}

func TestInlineDeleteFailureStillEnqueues(t *testing.T) {
	t.Parallel()
	// A cache that is down: a port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	down := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = down.Close() })
	b := setupInline(t, down, nil)

	ids, err := b.client.DeleteKeys(t.Context(), "price:1")
	require.NoError(t, err, "an inline failure must not fail the call")
	require.Len(t, ids, 1)
	require.Equal(t, []string{"price:1"}, b.queuedKeys(t, ids[0]))

	id, err := b.client.Publish(t.Context(), "product.updated", map[string]string{"id": "1"})
	require.NoError(t, err)
	require.NotEmpty(t, id)
	require.InDelta(t, 2, counter(t, b.reg, "invalidator_enqueue_inline_delete_failures_total"), 0)
}

func TestInlinePublishDeletesOnlyEnforcedKeyDeletes(t *testing.T) {
	t.Parallel()
	b := setupInline(t, redistest.Client(t), nil)
	untouched := []string{"shadow:7", "off:7", "page:7:1", "page:7:2", "feed:7", "price:8"}
	setKeys(t, b.cache, append([]string{"price:7"}, untouched...)...)

	id, err := b.client.Publish(t.Context(), "product.updated", map[string]string{"id": "7"})
	require.NoError(t, err)

	requireGone(t, b.cache, "price:7")
	// Shadow and off families are the worker's to judge; pattern deletes
	// and bumps stay with it too.
	requireCached(t, b.cache, untouched...)
	ti, err := b.insp.GetTaskInfo("invalidator-standard", id)
	if err != nil {
		ti, err = b.insp.GetTaskInfo("default", id)
	}
	require.NoError(t, err)
	require.Equal(t, tasks.KindEvent, ti.Type)
}

func TestInlineDeletePerCallWhenCoalescing(t *testing.T) {
	t.Parallel()
	b := setupInline(t, redistest.Client(t), &enqueue.CoalesceConfig{Window: 2 * time.Millisecond})
	setKeys(t, b.cache, "price:1", "price:2")

	ids, err := b.client.DeleteKeys(t.Context(), "price:1")
	require.NoError(t, err)
	requireGone(t, b.cache, "price:1")
	requireCached(t, b.cache, "price:2")
	require.Contains(t, b.queuedKeys(t, ids[0]), "price:1")
}

// A reader that took a lease before the write, and loaded the old row,
// cannot store it after the inline delete: the UNLINK removed its marker.
func TestInlineDeleteDefeatsAStaleLeaseHolder(t *testing.T) {
	t.Parallel()
	cache := redistest.Client(t)
	b := setupInline(t, cache, nil)
	ca, err := cacheaside.New(cacheaside.Config{Redis: cache, TTL: time.Minute})
	require.NoError(t, err)

	loaded, release := make(chan struct{}), make(chan struct{})
	got := make(chan []byte, 1)
	go func() {
		v, err := ca.Get(context.Background(), "price:1", func(context.Context) ([]byte, error) {
			close(loaded) // the lease is held and the old row read
			<-release
			return []byte("old"), nil
		})
		if err != nil {
			v = []byte("error: " + err.Error())
		}
		got <- v
	}()
	<-loaded
	_, err = b.client.DeleteKeys(t.Context(), "price:1") // the write committed
	require.NoError(t, err)
	close(release)
	require.Equal(t, "old", string(<-got), "the reader still gets its own load")

	requireGone(t, cache, "price:1")
	v, err := ca.Get(t.Context(), "price:1", func(context.Context) ([]byte, error) { return []byte("new"), nil })
	require.NoError(t, err)
	require.Equal(t, "new", string(v), "the stale load must not have been stored")
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
