package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// invokeWithin is invoke for commands that serve until stopped: the run
// ends after d at the latest.
func invokeWithin(t *testing.T, d time.Duration, env map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, args, streams{in: strings.NewReader(""), out: &out, err: &errb}, func(k string) string { return env[k] })
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// A redis:// URL that leads to one node of a Redis Cluster is a usage
// error (exit 2) for every command that takes a Redis URL, before anything
// is enqueued, scanned or served, and the message says what breaks for the
// role: MOVED errors for asynq's keys on the queue side, a SCAN of one node
// on the cache side.
func TestClusterNodeURLIsAUsageError(t *testing.T) {
	t.Parallel()
	node := "redis://" + redistest.ClusterAddrs(t)[2]
	db := redistest.NewDB(t)
	policy := writePolicy(t, paramsPolicy)
	const (
		queueSide = "asynq keeps each queue's keys"
		cacheSide = "would SCAN this node only"
	)
	for _, tc := range []struct {
		args      []string
		onCluster string // "queue" when --redis is the node, "cache" when --cache-redis is
		want      string
	}{
		{[]string{"enqueue", "keys", "k"}, "queue", queueSide},
		{[]string{"enqueue", "family", "user_profile", "id=1", "--yes"}, "queue", queueSide},
		{[]string{"enqueue", "bump", "user_feed", "user=1"}, "queue", queueSide},
		{[]string{"enqueue", "event", "user.updated", "id=1"}, "queue", queueSide},
		{[]string{"queues"}, "queue", queueSide},
		{[]string{"dead", "list"}, "queue", queueSide},
		{[]string{"dead", "retry", "--all"}, "queue", queueSide},
		{[]string{"dead", "purge", "--all", "--yes"}, "queue", queueSide},
		{[]string{"worker"}, "queue", queueSide},
		{[]string{"exporter", "--metrics-addr", "127.0.0.1:0"}, "queue", queueSide},
		{[]string{"dashboard", "--addr", "127.0.0.1:0"}, "queue", queueSide},
		{[]string{"dev", "--duration", "3s", "--dashboard-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"}, "queue", queueSide},
		{[]string{"bench", "lag", "--duration", "1s", "--rate", "10"}, "queue", queueSide},
		{[]string{"check-freshness", "--duration", "1s"}, "queue", queueSide},
		// The queue Redis doubles as the cache when no cache URL is given.
		{[]string{"enqueue", "family", "user_profile", "id=1", "--dry-run"}, "queue", cacheSide},
		{[]string{"policy", "explain", "user.updated", "id=1", "--redis", node}, "queue", cacheSide},
		{[]string{"enqueue", "family", "user_profile", "--dry-run", "--cache-redis", node}, "cache", cacheSide},
		{[]string{"policy", "explain", "user.updated", "id=1", "--cache-redis", node}, "cache", cacheSide},
		{[]string{"worker", "--cache-redis", node}, "cache", cacheSide},
		{[]string{"check-freshness", "--duration", "1s", "--cache-redis", node}, "cache", cacheSide},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			env := map[string]string{envPolicy: policy, envRedisURL: db.URL}
			role := "cache Redis"
			if tc.onCluster == "queue" {
				env[envRedisURL] = node
				role = "queue Redis"
			}
			start := time.Now()
			r := invokeWithin(t, 20*time.Second, env, tc.args...)
			require.Equal(t, exitUsage, r.code, "stdout=%s stderr=%s", r.stdout, r.stderr)
			require.Contains(t, r.stderr, role+" "+strings.TrimPrefix(node, "redis://")+" is a node of a Redis Cluster")
			require.Contains(t, r.stderr, tc.want)
			require.Contains(t, r.stderr, "redis+cluster://")
			require.Less(t, time.Since(start), 10*time.Second, "refused at start, not after serving")
		})
	}
}
