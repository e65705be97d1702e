package bench

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/internal/slot"
)

// The queue Redis of a bench may be a Redis Cluster (redis+cluster://).
// Server-wide things (INFO cpu, CONFIG, keyspace notifications, SCAN) are
// per node there, and a multi-key command must stay in one slot, so these
// helpers do them on every master.

// forEachMaster runs fn on every master of a cluster client, one at a time,
// or on rdb itself otherwise.
func forEachMaster(ctx context.Context, rdb redis.UniversalClient, fn func(context.Context, redis.UniversalClient) error) error {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return fn(ctx, rdb)
	}
	var mu sync.Mutex // ForEachMaster calls fn concurrently
	return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		return fn(ctx, c)
	})
}

// unlinkBySlot is UNLINK of keys, one command per hash slot on a cluster
// (pipelined), and one command otherwise. It returns how many existed.
func unlinkBySlot(ctx context.Context, rdb redis.UniversalClient, keys []string) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		return rdb.Unlink(ctx, keys...).Result()
	}
	pipe := rdb.Pipeline()
	groups := slot.Group(keys, func(k string) string { return k })
	cmds := make([]*redis.IntCmd, len(groups))
	for i, g := range groups {
		cmds[i] = pipe.Unlink(ctx, g...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// unlinkCmds queues UNLINKs of keys on pipe: one for all on a standalone
// server, one per hash slot on a cluster.
func unlinkCmds(ctx context.Context, rdb redis.UniversalClient, pipe redis.Pipeliner, keys []string) {
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		pipe.Unlink(ctx, keys...)
		return
	}
	for _, g := range slot.Group(keys, func(k string) string { return k }) {
		pipe.Unlink(ctx, g...)
	}
}

// psubscribeAll subscribes to pattern on every master (keyspace
// notifications are published on the node that holds the key) and returns
// the subscriptions, their confirmations received.
func psubscribeAll(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]*redis.PubSub, error) {
	var subs []*redis.PubSub
	err := forEachMaster(ctx, rdb, func(ctx context.Context, c redis.UniversalClient) error {
		sub := c.PSubscribe(ctx, pattern)
		if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
			_ = sub.Close()
			return err
		}
		subs = append(subs, sub)
		return nil
	})
	if err != nil {
		for _, s := range subs {
			_ = s.Close()
		}
		return nil, fmt.Errorf("subscribe to keyspace notifications: %w", err)
	}
	return subs, nil
}
