package redisconn_test

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redisconn"
	"github.com/invalidator/invalidator/internal/redistest"
)

func TestCheckTopology(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := redistest.NewDB(t)
	addr := redistest.ClusterAddrs(t)[1]

	// What the URLs ask for is what the servers are: nothing to say.
	require.NoError(t, redisconn.CheckTopology(ctx, db.Client, redisconn.UseQueue, "queue Redis"))
	require.NoError(t, redisconn.CheckTopology(ctx, redistest.Cluster(t), redisconn.UseCache, "cache Redis"))

	node, err := redisconn.Open("redis://" + addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = node.Close() })
	for _, tc := range []struct {
		use        redisconn.Use
		role, want string
		notWant    string
	}{
		{redisconn.UseQueue, "queue Redis", "MOVED", "SCAN"},
		{redisconn.UseCache, "cache Redis", "SCAN", "asynq"},
	} {
		err := redisconn.CheckTopology(ctx, node, tc.use, tc.role)
		require.ErrorIs(t, err, redisconn.ErrClusterNode)
		msg := err.Error()
		require.Contains(t, msg, tc.role+" "+addr+" is a node of a Redis Cluster")
		require.Contains(t, msg, tc.want)
		require.NotContains(t, msg, tc.notWant)
		require.Contains(t, msg, "redis+cluster://[user:password@]"+addr)
	}

	// A failed INFO is not a verdict: it comes back as it is.
	closed := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = closed.Close() })
	err = redisconn.CheckTopology(ctx, closed, redisconn.UseQueue, "queue Redis")
	require.Error(t, err)
	require.NotErrorIs(t, err, redisconn.ErrClusterNode)
	require.True(t, strings.Contains(err.Error(), "INFO cluster"), err.Error())
}
