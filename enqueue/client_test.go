package enqueue_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

const policyYAML = `
version: 1
default_class: standard
classes:
  standard: {ttl: 10m, max_retry: 5, timeout: 20s}
  critical: {ttl: 1m, max_retry: 25, timeout: 5s, queue: prices, weight: 6}
families:
  price:
    template: "price:{sku}"
    class: critical
  feed:
    template: "feed:{user}"
    class: standard
    strategy: version
events:
  product.updated:
    attributes: [id]
    invalidates:
      - {family: price, params: {sku: id}}
  post.created:
    attributes: [user]
    invalidates: [feed]
`

type bundle struct {
	db     *redistest.DB
	client *enqueue.Client
	insp   *asynq.Inspector
	now    time.Time
}

func setup(t *testing.T) *bundle {
	t.Helper()
	db := redistest.NewDB(t)
	policy, err := keyspec.Parse("p.yaml", []byte(policyYAML))
	require.NoError(t, err)
	now := time.Date(2026, 11, 27, 12, 0, 0, 123, time.UTC)
	c, err := enqueue.New(db.Client, enqueue.Config{Policy: policy, Now: func() time.Time { return now }})
	require.NoError(t, err)
	return &bundle{db: db, client: c, insp: asynq.NewInspectorFromRedisClient(db.Client), now: now}
}

func (b *bundle) task(t *testing.T, queue, id string) (*asynq.TaskInfo, tasks.Task) {
	t.Helper()
	ti, err := b.insp.GetTaskInfo(queue, id)
	require.NoError(t, err)
	decoded, err := tasks.Unmarshal(ti.Type, ti.Payload)
	require.NoError(t, err)
	return ti, decoded
}

func TestDeleteKeysUsesDefaultClassAndStampsTime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids, err := b.client.DeleteKeys(context.Background(), "a", "b\xff")
	require.NoError(t, err)
	require.Len(t, ids, 1)
	ti, decoded := b.task(t, "invalidator-standard", ids[0])
	require.Equal(t, 5, ti.MaxRetry)
	require.Equal(t, 20*time.Second, ti.Timeout)
	dk := decoded.(tasks.DeleteKeys)
	require.Equal(t, []string{"a", "b\xff"}, dk.Keys)
	require.True(t, b.now.Equal(dk.EnqueuedAt))
}

// A producer's task never carries a chosen ID: asynq refuses an ID that is
// still queued, so a second invalidation under the same ID would be
// dropped while the first waits. Only a dead-letter requeue names one.
func TestEnqueueRefusesAMessageWithAnID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	msgs, err := b.client.Builder().DeleteKeys("a")
	require.NoError(t, err)
	m := msgs[0]
	m.ID = "fixed"
	_, err = b.client.Enqueue(ctx, m)
	require.ErrorContains(t, err, "ID")
	m.ID = ""
	id, err := b.client.Enqueue(ctx, m)
	require.NoError(t, err)
	require.NotEqual(t, "fixed", id)
}

func TestDeleteKeysSplitsLargeCalls(t *testing.T) {
	t.Parallel()
	b := setup(t)
	keys := make([]string, tasks.MaxKeysPerTask*2+1)
	for i := range keys {
		keys[i] = "k" + string(rune('a'+i%26)) + time.Duration(i).String()
	}
	ids, err := b.client.DeleteKeys(context.Background(), keys...)
	require.NoError(t, err)
	require.Len(t, ids, 3)
	var got []string
	for _, id := range ids {
		_, d := b.task(t, "invalidator-standard", id)
		got = append(got, d.(tasks.DeleteKeys).Keys...)
	}
	require.Equal(t, keys, got, "every key must be enqueued exactly once, in order")
}

func TestFamilyTasksUseTheirClass(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id, err := b.client.DeleteFamily(context.Background(), "price", map[string]string{"sku": "42"})
	require.NoError(t, err)
	ti, decoded := b.task(t, "prices", id)
	require.Equal(t, 25, ti.MaxRetry)
	require.Equal(t, 5*time.Second, ti.Timeout)
	require.Equal(t, tasks.DeleteFamily{Family: "price", Params: map[string]string{"sku": "42"}, EnqueuedAt: decoded.(tasks.DeleteFamily).EnqueuedAt}, decoded)

	id, err = b.client.BumpVersion(context.Background(), "feed", map[string]string{"user": "7"})
	require.NoError(t, err)
	_, decoded = b.task(t, "invalidator-standard", id)
	require.Equal(t, "feed", decoded.(tasks.BumpVersion).Family)
}

// An event task goes to the most urgent class among its families and
// carries exactly the attributes given.
func TestPublish(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id, err := b.client.Publish(ctx, "product.updated", map[string]string{"id": "7"})
	require.NoError(t, err)
	ti, decoded := b.task(t, "prices", id)
	require.Equal(t, tasks.KindEvent, ti.Type)
	require.Equal(t, 25, ti.MaxRetry)
	require.Equal(t, tasks.Event{Name: "product.updated", Attrs: map[string]string{"id": "7"}, EnqueuedAt: b.now}, decoded)

	id, err = b.client.Publish(ctx, "post.created", map[string]string{"user": "1"})
	require.NoError(t, err)
	b.task(t, "invalidator-standard", id)

	// Mistakes fail at the write site and enqueue nothing.
	before, err := b.insp.GetQueueInfo("prices")
	require.NoError(t, err)
	_, err = b.client.Publish(ctx, "product.deleted", map[string]string{"id": "7"})
	require.ErrorIs(t, err, keyspec.ErrUnknownEvent)
	_, err = b.client.Publish(ctx, "product.updated", nil)
	require.ErrorIs(t, err, keyspec.ErrMissingParam)
	_, err = b.client.Publish(ctx, "product.updated", map[string]string{"id": "7", "sku": "7"})
	require.ErrorIs(t, err, keyspec.ErrUnknownParam)
	_, err = b.client.Publish(ctx, "product.updated", map[string]string{"id": ""})
	require.ErrorIs(t, err, keyspec.ErrEmptyParam)
	after, err := b.insp.GetQueueInfo("prices")
	require.NoError(t, err)
	require.Equal(t, before.Size, after.Size)
}

func TestOverrides(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.client.With(enqueue.Queue("prices"), enqueue.MaxRetry(0), enqueue.Timeout(time.Second))
	ids, err := c.DeleteKeys(context.Background(), "a")
	require.NoError(t, err)
	ti, _ := b.task(t, "prices", ids[0])
	require.Equal(t, 0, ti.MaxRetry)
	require.Equal(t, time.Second, ti.Timeout)

	// A queue that no class has would never be served.
	_, err = b.client.With(enqueue.Queue("urgent")).DeleteKeys(context.Background(), "a")
	require.ErrorContains(t, err, `queue "urgent" belongs to no class`)

	coalescing, err := enqueue.New(b.db.Client, enqueue.Config{Coalesce: &enqueue.CoalesceConfig{Window: time.Millisecond}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = coalescing.Close() })
	// Overrides asynq would quietly change are refused: it makes a negative
	// retry count 0, and keeps timeouts in whole seconds (500ms: none at
	// all, so its 30 min default).
	for _, o := range []enqueue.Option{enqueue.MaxRetry(-5), enqueue.Timeout(-time.Second),
		enqueue.Timeout(500 * time.Millisecond), enqueue.Timeout(1500 * time.Millisecond)} {
		_, err = b.client.With(o).DeleteKeys(context.Background(), "a")
		require.ErrorIs(t, err, enqueue.ErrInvalidOption)
		_, err = b.client.With(o).DeleteFamily(context.Background(), "price", map[string]string{"sku": "1"})
		require.ErrorIs(t, err, enqueue.ErrInvalidOption)
		_, err = coalescing.With(o).DeleteKeys(context.Background(), "a")
		require.ErrorIs(t, err, enqueue.ErrInvalidOption)
	}

	// The original client is unchanged.
	ids, err = b.client.DeleteKeys(context.Background(), "a")
	require.NoError(t, err)
	ti, _ = b.task(t, "invalidator-standard", ids[0])
	require.Equal(t, 5, ti.MaxRetry)
}

// Identical invalidations are never coalesced: each write gets its own task.
func TestNoDeduplication(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	first, err := b.client.DeleteFamily(ctx, "price", map[string]string{"sku": "1"})
	require.NoError(t, err)
	second, err := b.client.DeleteFamily(ctx, "price", map[string]string{"sku": "1"})
	require.NoError(t, err)
	require.NotEqual(t, first, second)
	info, err := b.insp.GetQueueInfo("prices")
	require.NoError(t, err)
	require.Equal(t, 2, info.Pending)
}

func TestRefusalsAtTheWriteSite(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.client.DeleteFamily(ctx, "prices", map[string]string{"sku": "1"})
	require.ErrorIs(t, err, keyspec.ErrUnknownFamily)
	_, err = b.client.DeleteFamily(ctx, "price", map[string]string{"id": "1"})
	require.ErrorIs(t, err, keyspec.ErrUnknownParam)
	_, err = b.client.DeleteFamily(ctx, "price", map[string]string{"sku": ""})
	require.ErrorIs(t, err, keyspec.ErrEmptyParam)
	_, err = b.client.DeleteFamily(ctx, "feed", map[string]string{"user": "1"})
	require.ErrorContains(t, err, "BumpVersion")
	_, err = b.client.BumpVersion(ctx, "price", map[string]string{"sku": "1"})
	require.ErrorIs(t, err, keyspec.ErrNotVersioned)
	_, err = b.client.BumpVersion(ctx, "feed", map[string]string{})
	require.ErrorIs(t, err, keyspec.ErrMissingParam)
	_, err = b.client.DeleteKeys(ctx)
	require.ErrorIs(t, err, tasks.ErrInvalid)
	_, err = b.client.DeleteKeys(ctx, "ok", "")
	require.ErrorIs(t, err, tasks.ErrInvalid)

	info, err := b.insp.Queues()
	require.NoError(t, err)
	require.Empty(t, info, "a refused call must enqueue nothing")
}

func TestNewFromURL(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	c, err := enqueue.NewFromURL(db.URL, enqueue.Config{})
	require.NoError(t, err)
	ids, err := c.DeleteKeys(context.Background(), "k")
	require.NoError(t, err)
	require.Len(t, ids, 1)
	require.NoError(t, c.Close())

	_, err = enqueue.NewFromURL("redis://:s3cret@127.0.0.1:notaport", enqueue.Config{})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
}
