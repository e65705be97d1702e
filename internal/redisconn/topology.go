package redisconn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ErrClusterNode is wrapped by the error of CheckTopology for a client that
// talks to one node of a Redis Cluster as if it were a whole server: a
// usage mistake in the URL (redis:// instead of redis+cluster://).
var ErrClusterNode = errors.New("single-server URL leads to a node of a Redis Cluster")

// Use is what a connection is for; it decides what talking to one node of
// a cluster breaks, and so what the error says.
type Use int

const (
	// UseQueue is the queue Redis: asynq's queues.
	UseQueue Use = iota
	// UseCache is a cache Redis: keys deleted, scanned and counted.
	UseCache
)

// CheckTopology refuses a single-server client c (redis://, or Sentinel)
// that is connected to a node of a Redis Cluster. Such a client sees one
// node and gets a MOVED error for every key in a slot another master
// serves, which breaks each use differently:
//
//   - the queue: asynq keeps each queue's keys under one hash tag,
//     asynq:{queue}:..., and its lists of queues and servers under keys of
//     their own, all in slots spread over the masters, so enqueues, polls and
//     the dead letter commands fail with MOVED;
//   - a cache: deletes of keys on other masters fail with MOVED, and a SCAN
//     (a family delete, a count) sees this node's keys only, so a family
//     delete would report success with the rest of the family still cached.
//
// role names the connection in the error ("queue Redis"). A cluster client
// passes without a round trip. The error matches ErrClusterNode; if INFO
// itself fails (an ACL without it, say), that error is returned instead,
// not matching ErrClusterNode, for the caller to decide.
func CheckTopology(ctx context.Context, c redis.UniversalClient, use Use, role string) error {
	if _, ok := c.(*redis.ClusterClient); ok {
		return nil
	}
	info, err := c.Info(ctx, "cluster").Result()
	if err != nil {
		return fmt.Errorf("check whether %s is a Redis Cluster node: INFO cluster: %w", role, err)
	}
	if !strings.Contains(info, "cluster_enabled:1") {
		return nil
	}
	addr, scheme := "host:port", "redis+cluster"
	if rc, ok := c.(*redis.Client); ok {
		o := rc.Options()
		addr = o.Addr
		if o.TLSConfig != nil {
			scheme = "rediss+cluster"
		}
	}
	what := "deletes of keys on other masters would fail with MOVED errors, and a family delete or a count would SCAN " +
		"this node only, reporting success with the keys of the other masters still cached"
	if use == UseQueue {
		what = "asynq keeps each queue's keys in one hash slot and its lists of queues and servers in others, spread over " +
			"the masters, so enqueues, polls and dead-letter commands would fail with MOVED errors for every key this node does not serve"
	}
	return &clusterNodeError{fmt.Sprintf("%s %s is a node of a Redis Cluster, but its URL names a single server: %s; "+
		"give a cluster URL, %s://[user:password@]%s[,host:port...], so that every master is reached", role, addr, what, scheme, addr)}
}

// clusterNodeError is CheckTopology's verdict: its message stands alone,
// and it matches ErrClusterNode.
type clusterNodeError struct{ msg string }

func (e *clusterNodeError) Error() string        { return e.msg }
func (e *clusterNodeError) Is(target error) bool { return target == ErrClusterNode }
