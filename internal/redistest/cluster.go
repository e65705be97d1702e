package redistest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// clusterSlots is the number of hash slots of every Redis Cluster.
	clusterSlots = 16384
	// clusterTimeout bounds the whole cluster bootstrap after the nodes run.
	clusterTimeout = 30 * time.Second
	// clusterBusOffset is where Redis puts a node's cluster bus: port+10000.
	clusterBusOffset = 10000
	// Node ports are drawn from [clusterPortMin, clusterPortMax): below
	// Linux's ephemeral range (32768+) for the port and its bus port alike,
	// so outgoing connections rarely collide with them.
	clusterPortMin = 15000
	clusterPortMax = 22000
)

// slotRanges returns the slots each master serves, as redis-cli assigns them.
func slotRanges() [][2]int {
	return [][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}}
}

// cluster is the private Redis Cluster of a test binary.
type cluster struct {
	addrs []string // host:port of each master, immutable
}

// Cluster returns a client, closed at test cleanup, for a local 3-master Redis
// Cluster started once per test binary and stopped by Main. Tests share the
// cluster, so each must keep to keys under its own Prefix(t).
func Cluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cl := current(t).clusterTarget(t)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: slices.Clone(cl.addrs)})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ClusterAddrs returns the host:port of each master of the cluster Cluster
// uses, e.g. to build a redis+cluster:// URL for a CLI subprocess.
func ClusterAddrs(t testing.TB) []string {
	t.Helper()
	return slices.Clone(current(t).clusterTarget(t).addrs)
}

// clusterTarget starts the cluster once per run.
func (h *harness) clusterTarget(t testing.TB) *cluster {
	t.Helper()
	h.clusterOnce.Do(func() {
		h.cluster, h.clusterErr = h.startCluster(context.Background())
	})
	if h.clusterErr != nil {
		t.Fatalf("redistest: start Redis Cluster: %v", h.clusterErr)
	}
	return h.cluster
}

// startCluster does what `redis-cli --cluster create` does, without needing
// redis-cli: start the nodes, give each a config epoch and a slot range, make
// them meet, and wait until every node and a client agree the cluster is up.
func (h *harness) startCluster(ctx context.Context) (*cluster, error) {
	bin, err := lookRedisServer(redisServerBinary)
	if err != nil {
		return nil, err
	}
	ranges := slotRanges()
	nodes := make([]*server, 0, len(ranges))
	for range ranges {
		// A failed start leaves the earlier nodes to Main's stop.
		s, err := h.start(ctx, serverSpec{bin: bin, pickPort: pickClusterPort, extraArgs: clusterArgs})
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, s)
	}

	ctx, cancel := context.WithTimeout(ctx, clusterTimeout)
	defer cancel()
	clients := make([]*redis.Client, len(nodes))
	for i, s := range nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: s.addr()})
		defer clients[i].Close()
	}
	for i, c := range clients {
		// Distinct epochs up front spare the cluster its epoch-collision dance.
		if err := c.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			return nil, fmt.Errorf("node %s: CLUSTER SET-CONFIG-EPOCH: %w", nodes[i].addr(), err)
		}
		if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", ranges[i][0], ranges[i][1]).Err(); err != nil {
			return nil, fmt.Errorf("node %s: CLUSTER ADDSLOTSRANGE %d %d: %w", nodes[i].addr(), ranges[i][0], ranges[i][1], err)
		}
	}
	for _, s := range nodes[1:] {
		if err := clients[0].ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(s.port)).Err(); err != nil {
			return nil, fmt.Errorf("node %s: CLUSTER MEET %s: %w", nodes[0].addr(), s.addr(), err)
		}
	}

	cl := &cluster{}
	for _, s := range nodes {
		cl.addrs = append(cl.addrs, s.addr())
	}
	if err := waitClusterOK(ctx, clients, nodes); err != nil {
		return nil, err
	}
	if err := checkClusterRouting(ctx, cl.addrs, clients[0]); err != nil {
		return nil, err
	}
	return cl, nil
}

// clusterArgs are the extra redis-server arguments of a cluster node.
func clusterArgs(port int) []string {
	return []string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", fmt.Sprintf("nodes-%d.conf", port),
		"--cluster-node-timeout", "2000",
	}
}

// pickClusterPort finds a port P such that P and its bus port P+10000 are
// both free.
func pickClusterPort() (int, error) {
	for range 100 {
		p := clusterPortMin + rand.IntN(clusterPortMax-clusterPortMin)
		if portsFree(p, p+clusterBusOffset) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port pair P, P+%d in [%d, %d) on 127.0.0.1", clusterBusOffset, clusterPortMin, clusterPortMax)
}

// portsFree reports whether every port can be bound on 127.0.0.1.
func portsFree(ports ...int) bool {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		ls = append(ls, l)
	}
	return true
}

// waitClusterOK polls until every node reports cluster_state:ok, knows all
// nodes, and sees every slot served by an online master. (CLUSTER SHARDS
// rather than the deprecated CLUSTER SLOTS: ADDSLOTSRANGE needs Redis 7
// anyway.)
func waitClusterOK(ctx context.Context, clients []*redis.Client, nodes []*server) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var lastErr error
		for i, c := range clients {
			if err := nodeReady(ctx, c, len(nodes)); err != nil {
				lastErr = fmt.Errorf("node %s: %w", nodes[i].addr(), err)
				break
			}
		}
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready within %s: %w; logs:\n%s", clusterTimeout, lastErr, clusterLogs(nodes))
		case <-tick.C:
		}
	}
}

// nodeReady checks one node's view of the cluster.
func nodeReady(ctx context.Context, c *redis.Client, want int) error {
	info, err := c.ClusterInfo(ctx).Result()
	if err != nil {
		return fmt.Errorf("CLUSTER INFO: %w", err)
	}
	if st := infoField(info, "cluster_state"); st != "ok" {
		return fmt.Errorf("cluster_state is %q", st)
	}
	if n := infoField(info, "cluster_known_nodes"); n != strconv.Itoa(want) {
		return fmt.Errorf("knows %s nodes, want %d", n, want)
	}
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		return fmt.Errorf("CLUSTER SHARDS: %w", err)
	}
	covered, masters := 0, 0
	for _, sh := range shards {
		if !slices.ContainsFunc(sh.Nodes, func(n redis.Node) bool { return n.Role == "master" && n.Health == "online" }) {
			continue
		}
		masters++
		for _, r := range sh.Slots {
			covered += int(r.End-r.Start) + 1
		}
	}
	if covered != clusterSlots || masters != want {
		return fmt.Errorf("CLUSTER SHARDS: %d online masters serve %d slots, want %d serving %d", masters, covered, want, clusterSlots)
	}
	return nil
}

// checkClusterRouting proves a cluster client can write and read a key in
// each slot range. Nodes may still be spreading the new topology, so it
// retries until ctx ends.
func checkClusterRouting(ctx context.Context, addrs []string, node *redis.Client) error {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer cc.Close()
	for _, r := range slotRanges() {
		key, err := keyInSlots(ctx, node, r[0], r[1])
		if err != nil {
			return err
		}
		for {
			err = setGet(ctx, cc, key)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("SET/GET %q (slots %d-%d) through a cluster client: %w", key, r[0], r[1], err)
			}
			cc.ReloadState(ctx)
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// setGet writes key, reads it back and deletes it.
func setGet(ctx context.Context, c redis.UniversalClient, key string) error {
	if err := c.Set(ctx, key, "ok", 0).Err(); err != nil {
		return err
	}
	v, err := c.Get(ctx, key).Result()
	if err != nil {
		return err
	}
	if v != "ok" {
		return fmt.Errorf("read %q back, want %q", v, "ok")
	}
	return c.Del(ctx, key).Err()
}

// keyInSlots finds a key whose hash slot lies in [lo, hi], asking the server
// rather than re-implementing CRC16.
func keyInSlots(ctx context.Context, c *redis.Client, lo, hi int) (string, error) {
	for i := range 1000 {
		key := "redistest:probe:" + strconv.Itoa(i)
		slot, err := c.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			return "", fmt.Errorf("CLUSTER KEYSLOT: %w", err)
		}
		if int(slot) >= lo && int(slot) <= hi {
			return key, nil
		}
	}
	return "", errors.New("no probe key hashes into slots " + strconv.Itoa(lo) + "-" + strconv.Itoa(hi))
}

// clusterLogs returns the log tails of nodes, for error messages.
func clusterLogs(nodes []*server) string {
	var b strings.Builder
	for _, s := range nodes {
		fmt.Fprintf(&b, "--- %s ---\n%s\n", s.addr(), s.logTail())
	}
	return b.String()
}
