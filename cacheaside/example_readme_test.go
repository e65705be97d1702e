package cacheaside_test

// The README's code, compiled (see examples/readme_test.go). Compiled, not
// run: it needs a cache Redis.

//lint:file-ignore SA4006 the README shows the calls; an application checks each err

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/keyspec"
)

// Price is the application's cached value.
type Price struct {
	SKU      string
	Currency string
	Cents    int64
}

// readmeDB stands in for the application's database.
type readmeDB struct{}

func (readmeDB) Price(_ context.Context, sku, cur string) (Price, error) {
	return Price{SKU: sku, Currency: cur}, nil
}

// README, "The read path: cacheaside".
func Example_readmeReadPath() {
	ctx := context.Background()
	cacheRedis := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	reg := prometheus.NewRegistry()
	policy := keyspec.Default()
	var db readmeDB
	sku, cur := "42", "EUR"
	feedFamily, _ := policy.Family("user_feed")
	loadFeed := func(ctx context.Context) ([]byte, error) { return []byte("[]"), nil }

	m, err := cacheaside.NewMetrics(reg) // reg: your prometheus.Registerer
	cache, err := cacheaside.New(cacheaside.Config{Redis: cacheRedis, Metrics: m})
	prices := cacheaside.NewTyped(cache, cacheaside.JSON[Price]{})
	fam, err := policy.Family("product_price")

	// GET /price/{sku}: TTL and jitter come from the family's class
	p, err := prices.GetFamily(ctx, fam, map[string]string{"sku": sku, "currency": cur},
		func(ctx context.Context) (Price, error) { return db.Price(ctx, sku, cur) })

	// version families: one script reads the version and the data at it
	page, err := cache.GetVersioned(ctx, feedFamily, map[string]string{"user_id": "42"}, loadFeed)

	_, _, _ = p, page, err
}
