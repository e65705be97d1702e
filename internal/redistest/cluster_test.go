package redistest_test

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

func TestCluster_RoutesKeysToThreeMasters(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := redistest.Cluster(t)

	var masters atomic.Int32
	require.NoError(t, c.ForEachMaster(ctx, func(context.Context, *redis.Client) error {
		masters.Add(1)
		return nil
	}))
	require.EqualValues(t, 3, masters.Load())

	// 100 keys without hash tags spread over all slots; every master must
	// end up holding some of them.
	p := redistest.Prefix(t)
	for i := range 100 {
		require.NoError(t, c.Set(ctx, p+":"+strconv.Itoa(i), i, 0).Err())
	}
	var holding atomic.Int32
	require.NoError(t, c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		keys, _, err := m.Scan(ctx, 0, p+":*", 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			holding.Add(1)
		}
		return nil
	}))
	require.EqualValues(t, 3, holding.Load())
}

func TestCluster_EachTestGetsItsOwnClient(t *testing.T) {
	t.Parallel()
	var first *redis.ClusterClient
	fatal := redistest.NewStandIn(t.Name()).Run(func(ft testing.TB) {
		first = redistest.Cluster(ft)
		require.NoError(t, first.Ping(t.Context()).Err())
	})
	require.Empty(t, fatal)
	require.ErrorIs(t, first.Ping(t.Context()).Err(), redis.ErrClosed, "the client must be closed at cleanup")

	// The cluster itself lives on for other tests.
	require.NoError(t, redistest.Cluster(t).Ping(t.Context()).Err())
}

func TestClusterAddrs_ServeTheSlotRanges(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	addrs := redistest.ClusterAddrs(t)
	require.Len(t, addrs, 3)
	addrs[0] = "mutated" // a copy: must not break other callers
	addrs = redistest.ClusterAddrs(t)
	require.NotContains(t, addrs, "mutated")

	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	shards, err := c.ClusterShards(ctx).Result()
	require.NoError(t, err)
	got := map[[2]int]string{} // slot range -> address of its master
	for _, sh := range shards {
		for _, n := range sh.Nodes {
			if n.Role != "master" {
				continue
			}
			for _, r := range sh.Slots {
				got[[2]int{int(r.Start), int(r.End)}] = net.JoinHostPort(n.IP, strconv.Itoa(int(n.Port)))
			}
		}
	}
	want := map[[2]int]bool{}
	for _, r := range redistest.SlotRanges() {
		want[r] = true
		require.Contains(t, addrs, got[r], "slots %d-%d", r[0], r[1])
	}
	require.Len(t, got, len(want))
}
