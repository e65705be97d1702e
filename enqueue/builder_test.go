package enqueue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// A Builder makes, without Redis, exactly the task a Client enqueues: same
// kind, payload, queue, retries and timeout.
func TestBuilderMakesWhatTheClientEnqueues(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	build := b.client.Builder()
	overridden := b.client.With(enqueue.Queue("prices"), enqueue.MaxRetry(3), enqueue.Timeout(2*time.Second))

	for _, tc := range []struct {
		name   string
		build  func() (enqueue.Message, error)
		client func() (string, error)
	}{
		{"keys", func() (enqueue.Message, error) {
			ms, err := build.DeleteKeys("a", "b\xff")
			require.Len(t, ms, 1)
			return ms[0], err
		}, func() (string, error) {
			ids, err := b.client.DeleteKeys(ctx, "a", "b\xff")
			return ids[0], err
		}},
		{"family", func() (enqueue.Message, error) { return build.DeleteFamily("price", map[string]string{"sku": "1"}) },
			func() (string, error) { return b.client.DeleteFamily(ctx, "price", map[string]string{"sku": "1"}) }},
		{"bump", func() (enqueue.Message, error) { return build.BumpVersion("feed", map[string]string{"user": "1"}) },
			func() (string, error) { return b.client.BumpVersion(ctx, "feed", map[string]string{"user": "1"}) }},
		{"event", func() (enqueue.Message, error) { return build.Publish("product.updated", map[string]string{"id": "7"}) },
			func() (string, error) { return b.client.Publish(ctx, "product.updated", map[string]string{"id": "7"}) }},
		{"overrides", func() (enqueue.Message, error) {
			ms, err := overridden.Builder().DeleteKeys("k")
			return ms[0], err
		}, func() (string, error) {
			ids, err := overridden.DeleteKeys(ctx, "k")
			return ids[0], err
		}},
	} {
		m, err := tc.build()
		require.NoError(t, err, tc.name)
		id, err := tc.client()
		require.NoError(t, err, tc.name)
		ti, err := b.insp.GetTaskInfo(m.Queue, id)
		require.NoError(t, err, "%s: the task is on the Message's queue", tc.name)
		require.Equal(t, ti.Type, m.Kind, tc.name)
		require.Equal(t, ti.Payload, m.Payload, tc.name)
		require.Equal(t, ti.MaxRetry, m.MaxRetry, tc.name)
		require.Equal(t, ti.Timeout, m.Timeout, tc.name)
	}
}

// A Builder refuses what a Client refuses, with the same error (the Client
// adds "enqueue "), so a write site fails alike whichever path it takes.
func TestBuilderRefusesWhatTheClientRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	bad := b.client.With(enqueue.MaxRetry(-1))
	for _, tc := range []struct {
		name   string
		build  func() error
		client func() error
		is     error
	}{
		{"no keys", func() error { _, err := b.client.Builder().DeleteKeys(); return err },
			func() error { _, err := b.client.DeleteKeys(ctx); return err }, tasks.ErrInvalid},
		{"unknown family", func() error { _, err := b.client.Builder().DeleteFamily("nope", nil); return err },
			func() error { _, err := b.client.DeleteFamily(ctx, "nope", nil); return err }, keyspec.ErrUnknownFamily},
		{"version family", func() error { _, err := b.client.Builder().DeleteFamily("feed", nil); return err },
			func() error { _, err := b.client.DeleteFamily(ctx, "feed", nil); return err }, nil},
		{"missing param", func() error { _, err := b.client.Builder().BumpVersion("feed", nil); return err },
			func() error { _, err := b.client.BumpVersion(ctx, "feed", nil); return err }, keyspec.ErrMissingParam},
		{"unknown event", func() error { _, err := b.client.Builder().Publish("x", nil); return err },
			func() error { _, err := b.client.Publish(ctx, "x", nil); return err }, keyspec.ErrUnknownEvent},
		{"bad override", func() error { _, err := bad.Builder().DeleteKeys("k"); return err },
			func() error { _, err := bad.DeleteKeys(ctx, "k"); return err }, enqueue.ErrInvalidOption},
		{"bad override family", func() error {
			_, err := bad.Builder().DeleteFamily("price", map[string]string{"sku": "1"})
			return err
		}, func() error { _, err := bad.DeleteFamily(ctx, "price", map[string]string{"sku": "1"}); return err }, enqueue.ErrInvalidOption},
	} {
		berr, cerr := tc.build(), tc.client()
		require.Error(t, berr, tc.name)
		require.Equal(t, "enqueue "+berr.Error(), cerr.Error(), tc.name)
		if tc.is != nil {
			require.ErrorIs(t, berr, tc.is, tc.name)
		}
	}
	info, err := b.insp.Queues()
	require.NoError(t, err)
	require.Empty(t, info)
}

// NewBuilder needs no connection and takes Config's defaults.
func TestNewBuilderDefaults(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	b := enqueue.NewBuilder(enqueue.Config{Target: "sessions", Now: func() time.Time { return now }})
	ms, err := b.DeleteKeys("k")
	require.NoError(t, err)
	require.Len(t, ms, 1)
	require.Equal(t, keyspec.DefaultQueuePrefix+keyspec.DefaultClassName, ms[0].Queue)
	got, err := tasks.Unmarshal(ms[0].Kind, ms[0].Payload)
	require.NoError(t, err)
	require.Equal(t, tasks.DeleteKeys{Keys: []string{"k"}, Target: "sessions", EnqueuedAt: now}, got)

	_, err = b.DeleteFamily("price", nil)
	require.ErrorIs(t, err, keyspec.ErrUnknownFamily, "the default policy knows no family")
}

// A sharded class's tasks go to the shard of their shard key; a queue
// override naming the class resolves the same way, one naming a shard stays.
func TestBuilderPicksTheShard(t *testing.T) {
	t.Parallel()
	p, err := keyspec.Parse("p.yaml", []byte("version: 1\nclasses:\n  standard: {shards: 3}\n  bulk: {}\n"))
	require.NoError(t, err)
	c := p.Classes["standard"]
	b := enqueue.NewBuilder(enqueue.Config{Policy: p})
	seen := map[string]bool{}
	for i := range 100 {
		k := fmt.Sprintf("user:{%d}:x", i)
		msgs, err := b.DeleteKeys(k, "other")
		require.NoError(t, err)
		require.Equal(t, c.QueueFor(k), msgs[0].Queue, k)
		seen[msgs[0].Queue] = true
		msgs, err = b.With(enqueue.Queue("invalidator-standard")).DeleteKeys(k)
		require.NoError(t, err)
		require.Equal(t, c.QueueFor(k), msgs[0].Queue, k)
	}
	require.Len(t, seen, 3)
	one := c.Queues()[1]
	msgs, err := b.With(enqueue.Queue(one)).DeleteKeys("a")
	require.NoError(t, err)
	require.Equal(t, one, msgs[0].Queue)
	msgs, err = b.With(enqueue.Queue("invalidator-bulk")).DeleteKeys("a")
	require.NoError(t, err)
	require.Equal(t, "invalidator-bulk", msgs[0].Queue)
}
