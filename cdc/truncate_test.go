package cdc_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cdc"
	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

// truncatePolicy maps three tables. products' event invalidates two delete
// families (one by key, one by pattern) and a version family; reviews
// reference products, so TRUNCATE products CASCADE truncates them too.
const truncatePolicy = `
version: 1
classes:
  standard: {ttl: 10m}
families:
  product: {template: "product:{id}", class: standard}
  product_page: {template: "product_page:{id}:{page}", class: standard}
  catalog: {template: "catalog:{id}", class: standard, strategy: version}
  review: {template: "review:{product}:{id}", class: standard}
  price: {template: "price:{sku}:{currency}", class: standard}
  untouched: {template: "untouched:{id}", class: standard}
events:
  product.updated:
    attributes: [id]
    invalidates: [product, {family: product_page, wildcard: [page]}, catalog]
  review.changed: {attributes: [product, id], invalidates: [review]}
  price.changed: {attributes: [sku, currency], invalidates: [price]}
  untouched.changed: {attributes: [id], invalidates: [untouched]}
tables:
  public.products: {event: product.updated, attributes: {id: id}}
  public.reviews: {event: review.changed, attributes: {product: product_id, id: id}}
  public.prices: {event: price.changed, attributes: {sku: product_id, currency: currency}}
  public.untouched: {event: untouched.changed, attributes: {id: id}}
`

const truncateSchema = `
CREATE TABLE products (id int PRIMARY KEY, name text);
CREATE TABLE reviews (id int PRIMARY KEY, product_id int NOT NULL REFERENCES products(id), body text);
ALTER TABLE reviews REPLICA IDENTITY FULL;
CREATE TABLE prices (id int PRIMARY KEY, product_id int NOT NULL, currency text NOT NULL, amount int NOT NULL);
ALTER TABLE prices REPLICA IDENTITY FULL;
CREATE TABLE untouched (id int PRIMARY KEY);
`

// truncateRig is a database with the truncate policy's tables, a cdc
// reader and a worker applying what it enqueues to a cache Redis.
type truncateRig struct {
	db     *pgtest.DB
	cache  redis.UniversalClient
	insp   *asynq.Inspector
	policy *keyspec.Policy
}

func newTruncateRig(t *testing.T) *truncateRig {
	t.Helper()
	ctx := t.Context()
	p, err := keyspec.Parse("policy.yaml", []byte(truncatePolicy))
	require.NoError(t, err)
	db := pgtest.NewDB(t)
	_, err = db.Pool.Exec(ctx, truncateSchema)
	require.NoError(t, err)
	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	_, err = cdc.Setup(ctx, conn.Conn(), cdc.Target{Policy: p, Slot: db.Name})
	conn.Release()
	require.NoError(t, err)
	t.Cleanup(func() { dropSlot(db) })
	queue := redistest.NewDB(t).Client
	cache := redistest.NewDB(t).Client
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	rd, err := cdc.NewReader(cdc.Config{DSN: db.DSN, Slot: db.Name, Policy: p, Queue: queue, StatsInterval: -1,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, Logger: quiet})
	require.NoError(t, err)
	w, err := worker.New(worker.Config{Queue: queue, Cache: cache, Policy: p, Logger: quiet,
		PollInterval: time.Millisecond, ShutdownTimeout: time.Second})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- rd.Run(ctx) }()
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, errors.Join(<-done, <-done))
	})
	return &truncateRig{db: db, cache: cache, insp: asynq.NewInspectorFromRedisClient(queue), policy: p}
}

// dropSlot drops the test database's slot once its reader let go of it.
func dropSlot(db *pgtest.DB) {
	for range 3000 {
		var left int
		err := db.Pool.QueryRow(context.Background(), `WITH d AS (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = current_database() AND NOT active) SELECT (SELECT count(*) FROM d) * 0 +
			(SELECT count(*) FROM pg_replication_slots WHERE database = current_database() AND active)`).Scan(&left)
		if err == nil && left == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *truncateRig) exec(t *testing.T, sql string) {
	t.Helper()
	_, err := r.db.Pool.Exec(t.Context(), sql)
	require.NoError(t, err)
}

// fill caches keys of every family, those of rows the tables do not hold
// too: a truncate must take every key of its table's families.
func (r *truncateRig) fill(t *testing.T) []string {
	t.Helper()
	keys := []string{"product:1", "product:2", "product:99", "product_page:1:a", "product_page:99:b",
		"review:1:1", "review:99:3", "price:1:EUR", "price:99:USD", "untouched:1"}
	for _, id := range []string{"1", "99"} {
		vk, err := r.policy.Families["catalog"].VersionKey(map[string]string{"id": id})
		require.NoError(t, err)
		keys = append(keys, vk)
	}
	for _, k := range keys {
		require.NoError(t, r.cache.Set(t.Context(), k, "v", 0).Err())
	}
	return keys
}

// waitGone waits until none of keys is cached, then until the queues hold
// nothing to run, and returns the keys left in the cache.
func (r *truncateRig) waitGone(t *testing.T, keys ...string) []string {
	t.Helper()
	require.Eventually(t, func() bool {
		n, err := r.cache.Exists(t.Context(), keys...).Result()
		require.NoError(t, err)
		return n == 0
	}, 30*time.Second, 10*time.Millisecond, "keys %v still cached", keys)
	require.Eventually(t, func() bool {
		qs, err := r.insp.Queues()
		require.NoError(t, err)
		for _, q := range qs {
			info, err := r.insp.GetQueueInfo(q)
			require.NoError(t, err)
			require.Zero(t, info.Archived, "dead-lettered tasks in queue %s", q)
			if info.Pending+info.Active+info.Retry > 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "queues not drained")
	left, err := r.cache.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	return left
}

func TestTruncateInvalidatesEveryKeyOfTheTablesFamilies(t *testing.T) {
	t.Parallel()
	r := newTruncateRig(t)
	r.fill(t)
	r.exec(t, "INSERT INTO products VALUES (1, 'a'), (2, 'b'); INSERT INTO reviews VALUES (1, 1, 'ok')")
	r.exec(t, "INSERT INTO prices VALUES (1, 1, 'EUR', 5); INSERT INTO untouched VALUES (1)")
	// The inserts' own invalidations go first, so the fill below outlives
	// them.
	r.waitGone(t, "product:1", "product:2", "review:1:1", "price:1:EUR", "untouched:1")
	r.fill(t)

	// CASCADE truncates reviews too: PostgreSQL names both tables in one
	// truncate message.
	r.exec(t, "TRUNCATE products CASCADE")
	left := r.waitGone(t, "product:1", "product:2", "product:99", "product_page:1:a", "product_page:99:b",
		"{catalog:1}#ver", "{catalog:99}#ver", "review:1:1", "review:99:3")
	require.ElementsMatch(t, []string{"price:1:EUR", "price:99:USD", "untouched:1"}, left,
		"a truncate takes its tables' families, no other")

	// Two tables in one statement.
	r.exec(t, "TRUNCATE prices, untouched")
	left = r.waitGone(t, "price:1:EUR", "price:99:USD", "untouched:1")
	require.Empty(t, left)
}
