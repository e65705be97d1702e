package main

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/internal/redisconn"
)

// countMatching counts the keys matching a SCAN pattern on every master:
// the dry run of a family delete. It walks the whole keyspace, as the
// delete would.
func countMatching(ctx context.Context, c redis.UniversalClient, pattern string) (int64, error) {
	var n atomic.Int64
	scan := func(ctx context.Context, node redis.UniversalClient) error {
		var cur uint64
		for {
			keys, next, err := node.Scan(ctx, cur, pattern, 1000).Result()
			if err != nil {
				return fmt.Errorf("count keys matching %q: %w", pattern, err)
			}
			n.Add(int64(len(keys)))
			if next == 0 {
				return nil
			}
			cur = next
		}
	}
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return scan(ctx, node) })
	} else {
		err = scan(ctx, c)
	}
	return n.Load(), err
}

// cacheRedis connects to the cache Redis: --cache-redis, else
// INVALIDATOR_CACHE_REDIS_URL, else the queue Redis, used as a cache.
func (a *app) cacheRedis(ctx context.Context, flag string) (redis.UniversalClient, error) {
	if url := a.env(flag, envCacheRedisURL, ""); url != "" {
		return a.connect(ctx, "cache Redis", url)
	}
	return a.connectAs(ctx, roleQueue, redisconn.UseCache, a.env(a.redisURL, envRedisURL, defaultRedisURL))
}
