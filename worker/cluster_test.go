package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redisconn"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/worker"
)

// The cache is a 3-master Redis Cluster; the queue Redis is standalone.
func TestClusterCache(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cluster := redistest.Cluster(t)
	ctx := context.Background()
	p := redistest.Prefix(t)
	b.startWorker(t, func(c *worker.Config) { c.Cache = cluster; c.ScanCount = 20 })

	t.Run("keys across slots", func(t *testing.T) {
		keys := make([]string, 300)
		for i := range keys {
			keys[i] = fmt.Sprintf("%s:k:%d", p, i) // spread over every master
		}
		set(t, cluster, keys...)
		_, err := b.client.DeleteKeys(ctx, keys...)
		require.NoError(t, err)
		requireGone(t, cluster, keys...)
	})

	t.Run("family on every master", func(t *testing.T) {
		// product_page is hash-tagged by id: one entity lives in one slot.
		// user_profile is not, so its keys spread over all masters.
		var users, keep []string
		for i := range 200 {
			users = append(users, fmt.Sprintf("user:%s-%d:profile", p, i))
			keep = append(keep, fmt.Sprintf("user:%s-%d:settings", p, i))
		}
		set(t, cluster, users...)
		set(t, cluster, keep...)
		// Delete every user's profile: id unfixed.
		_, err := b.client.DeleteFamily(ctx, "user_profile", map[string]string{})
		require.NoError(t, err)
		requireGone(t, cluster, users...)
		require.Equal(t, len(keep), count(t, cluster, keep...))
	})

	t.Run("bump version", func(t *testing.T) {
		fam, err := b.policy.Family("feed")
		require.NoError(t, err)
		params := map[string]string{"user": p}
		vkey, err := fam.VersionKey(params)
		require.NoError(t, err)
		version := func() int64 { v, _ := cluster.Get(ctx, vkey).Int64(); return v }
		require.NoError(t, cluster.Set(ctx, vkey, 5_000_000_000_000_000, 0).Err()) // µs, far ahead of Redis TIME
		_, err = b.client.BumpVersion(ctx, "feed", params)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return version() == 5_000_000_000_000_001 }, 10*time.Second, time.Millisecond)
	})
}

// A plain client on one node of a cluster would scan a fraction of the
// keyspace and report success, or get MOVED errors from asynq: the worker
// refuses to start with one, as a usage error whose message fits the role.
func TestRefusesSingleNodeClientOfCluster(t *testing.T) {
	t.Parallel()
	b := setup(t)
	node := redis.NewClient(&redis.Options{Addr: redistest.ClusterAddrs(t)[0]})
	t.Cleanup(func() { _ = node.Close() })

	w, err := worker.New(worker.Config{Queue: b.rdb, Cache: node, Policy: b.policy, Logger: testLogger(t)})
	require.NoError(t, err)
	err = w.Run(context.Background())
	require.ErrorIs(t, err, redisconn.ErrClusterNode)
	require.ErrorContains(t, err, "cache Redis "+node.Options().Addr+" is a node of a Redis Cluster")
	require.ErrorContains(t, err, "SCAN")
	require.ErrorContains(t, err, "redis+cluster://")

	// The queue side has no scans: asynq's keys live in slots all over the
	// cluster, and a single-node client gets MOVED errors.
	w, err = worker.New(worker.Config{Queue: node, Cache: b.rdb, Policy: b.policy, Logger: testLogger(t)})
	require.NoError(t, err)
	err = w.Run(context.Background())
	require.ErrorIs(t, err, redisconn.ErrClusterNode)
	require.ErrorContains(t, err, "queue Redis "+node.Options().Addr+" is a node of a Redis Cluster")
	require.ErrorContains(t, err, "MOVED")
	require.NotContains(t, err.Error(), "scan")
	require.NotContains(t, err.Error(), "SCAN")
}
