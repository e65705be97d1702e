package cacheaside_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

// priceDB stands in for the application's database.
type priceDB struct {
	mu     sync.Mutex
	prices map[string]string // guarded by mu
}

func (db *priceDB) price(sku string) (string, bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	p, ok := db.prices[sku]
	return p, ok
}

func (db *priceDB) setPrice(sku, p string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.prices[sku] = p
}

// priceHandlers are the two halves: reads through cacheaside, writes that
// commit and then enqueue the invalidation.
type priceHandlers struct {
	db     *priceDB
	cache  *cacheaside.Cache
	prices *keyspec.Family
	inv    *enqueue.Client
}

// getPrice is the read handler.
func (h *priceHandlers) getPrice(ctx context.Context, sku string) (string, error) {
	v, err := h.cache.GetFamily(ctx, h.prices, map[string]string{"sku": sku}, func(ctx context.Context) ([]byte, error) {
		p, ok := h.db.price(sku)
		if !ok {
			return nil, cacheaside.ErrNotFound
		}
		return []byte(p), nil
	})
	return string(v), err
}

// putPrice is the write handler: the write commits first, then the
// invalidation is enqueued; a worker deletes the key.
func (h *priceHandlers) putPrice(ctx context.Context, sku, price string) error {
	h.db.setPrice(sku, price)
	key, err := h.prices.Key(map[string]string{"sku": sku})
	if err != nil {
		return err
	}
	_, err = h.inv.DeleteKeys(ctx, key)
	return err
}

func Example() {
	redistest.NewStandIn("Example").Run(func(t testing.TB) {
		rdb := redistest.Client(t) // queue and cache Redis: any redis.UniversalClient
		ctx := context.Background()
		policy, err := keyspec.Parse("policy.yaml", []byte(`
version: 1
classes:
  critical: {ttl: 1m, jitter: 0.1}
families:
  price:
    template: "price:{sku}"
    class: critical
`))
		if err != nil {
			panic(err)
		}
		prices, _ := policy.Family("price")

		metrics, err := cacheaside.NewMetrics(prometheus.NewRegistry()) // your registry
		if err != nil {
			panic(err)
		}
		cache, err := cacheaside.New(cacheaside.Config{Redis: rdb, Metrics: metrics})
		if err != nil {
			panic(err)
		}
		inv, err := enqueue.New(rdb, enqueue.Config{Policy: policy})
		if err != nil {
			panic(err)
		}
		h := &priceHandlers{db: &priceDB{prices: map[string]string{"42": "9.99"}}, cache: cache, prices: prices, inv: inv}

		// The worker fleet, here one worker in this process.
		w, err := worker.New(worker.Config{Queue: rdb, Policy: policy, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			panic(err)
		}
		wctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		defer func() { stop(); <-done }()

		fmt.Println(h.getPrice(ctx, "42")) // a miss: loaded and cached
		fmt.Println(h.getPrice(ctx, "42")) // a hit

		if err := h.putPrice(ctx, "42", "12.50"); err != nil {
			panic(err)
		}
		waitGone(ctx, rdb, "price:42") // the worker applies the invalidation
		fmt.Println(h.getPrice(ctx, "42"))

		_, err = h.getPrice(ctx, "7")
		fmt.Println(err)
	})
	// Output:
	// 9.99 <nil>
	// 9.99 <nil>
	// 12.50 <nil>
	// cacheaside: get "price:7": not found
}

// waitGone waits until the worker has deleted key.
func waitGone(ctx context.Context, rdb redis.UniversalClient, key string) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if rdb.Exists(ctx, key).Val() == 0 {
			return
		}
	}
	panic("the invalidation of " + key + " was not applied within 10s")
}

func ExampleTyped() {
	redistest.NewStandIn("ExampleTyped").Run(func(t testing.TB) {
		cache, err := cacheaside.New(cacheaside.Config{Redis: redistest.Client(t), TTL: 10 * time.Minute, Jitter: 0.1})
		if err != nil {
			panic(err)
		}
		type profile struct{ Name string }
		profiles := cacheaside.NewTyped(cache, cacheaside.JSON[profile]{})
		p, err := profiles.Get(context.Background(), "user:{42}:profile", func(ctx context.Context) (profile, error) {
			return profile{Name: "Ada"}, nil // SELECT ... FROM users WHERE id = 42
		})
		fmt.Println(p.Name, err)
	})
	// Output: Ada <nil>
}

func ExampleCache_GetVersioned() {
	redistest.NewStandIn("ExampleCache_GetVersioned").Run(func(t testing.TB) {
		rdb := redistest.Client(t)
		ctx := context.Background()
		feed, err := keyspec.NewFamily("feed", "feed:{user}", keyspec.FamilyOptions{
			Strategy: keyspec.StrategyVersion, HashTag: "user", TTL: time.Hour,
		})
		if err != nil {
			panic(err)
		}
		cache, err := cacheaside.New(cacheaside.Config{Redis: rdb})
		if err != nil {
			panic(err)
		}
		page := "page 1"
		load := func(context.Context) ([]byte, error) { return []byte(page), nil }
		params := map[string]string{"user": "42"}

		v, _ := cache.GetVersioned(ctx, feed, params, load)
		fmt.Println(string(v))

		// A write to the feed; the worker's bump (enqueue.Client.BumpVersion)
		// advances the version, orphaning every page of the old one.
		page = "page 1, with a new post"
		vkey, _ := feed.VersionKey(params)
		rdb.Incr(ctx, vkey) // what the bump does, in short

		v, _ = cache.GetVersioned(ctx, feed, params, load)
		fmt.Println(string(v))
	})
	// Output:
	// page 1
	// page 1, with a new post
}
