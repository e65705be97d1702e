package enqueue_test

// The README's code, compiled: examples/readme_test.go fails when a Go
// snippet of README.md is not found, verbatim, in an example file, so the
// README cannot drift from the API again. These examples are compiled, not
// run: they need a queue Redis.

//lint:file-ignore SA4006 the README shows the calls; an application checks each err

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
)

// README, "Using it from your application".
func Example_readmeProducer() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})

	policy, err := keyspec.Load("policy.yaml")                   // the shared policy file
	inv, err := enqueue.New(rdb, enqueue.Config{Policy: policy}) // rdb: redis.UniversalClient of the queue Redis

	// right after the transaction commits:
	ids, err := inv.DeleteKeys(ctx, "user:{42}:profile", "user:{42}:settings")
	id, err := inv.DeleteFamily(ctx, "product_price", map[string]string{"sku": "42"})
	id, err = inv.BumpVersion(ctx, "user_feed", map[string]string{"user_id": "42"})

	// or say what changed, and let the policy's events section decide:
	id, err = inv.Publish(ctx, "product.updated", map[string]string{"id": "42"})

	// per-call overrides of the class defaults:
	ids, err = inv.With(enqueue.Queue("invalidator-critical"), enqueue.MaxRetry(50)).DeleteKeys(ctx, "k")

	_, _, _ = ids, id, err
}

// README, coalescing.
func Example_readmeCoalesce() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	_ = readmeCoalesce(rdb, keyspec.Default())
}

func readmeCoalesce(rdb redis.UniversalClient, policy *keyspec.Policy) error {
	inv, err := enqueue.New(rdb, enqueue.Config{
		Policy:   policy,
		Coalesce: &enqueue.CoalesceConfig{Window: 2 * time.Millisecond}, // default: 1ms, MaxKeys 1000
		// NoCoalesce: true, // every call its own task and ID
	})
	if err != nil {
		return err
	}
	defer inv.Close()

	return nil
}

// README, "Inline first delete".
func Example_readmeInlineDelete() {
	queueRedis := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	cacheRedis := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6380"})
	policy := keyspec.Default()
	inlineMetrics, _ := enqueue.NewInlineMetrics(prometheus.NewRegistry())

	inv, err := enqueue.New(queueRedis, enqueue.Config{
		Policy:        policy,
		InlineDelete:  cacheRedis,    // the cache that Target names ("" = the workers' Cache)
		InlineMetrics: inlineMetrics, // enqueue.NewInlineMetrics(registry); optional
	})

	_, _ = inv, err
}
