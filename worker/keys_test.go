package worker

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// Key helpers shared by this package's internal and external tests (the
// exported names are visible to package worker_test, and only in tests).
// Both work key by key in one pipeline: a multi-key command would cross the
// slots of a cluster.

// CountExisting reports how many of keys exist.
func CountExisting(t testing.TB, rdb redis.UniversalClient, keys ...string) int {
	t.Helper()
	ctx := context.Background()
	pipe := rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Exists(ctx, k)
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)
	n := 0
	for _, c := range cmds {
		n += int(c.Val())
	}
	return n
}

// SetKeys sets each key to "v".
func SetKeys(t testing.TB, rdb redis.UniversalClient, keys ...string) {
	t.Helper()
	ctx := context.Background()
	pipe := rdb.Pipeline()
	for _, k := range keys {
		pipe.Set(ctx, k, "v", 0)
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)
}
