package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// A worker of 'invalidator dev' that fails at once (here: it refuses a
// plain client on a Redis Cluster node) ends the run at once, with its
// error, rather than leaving a stack that invalidates nothing for the whole
// --duration.
func TestDevStopsWhenTheWorkerFails(t *testing.T) {
	t.Parallel()
	node := redistest.ClusterAddrs(t)[0]
	start := time.Now()
	r := invoke(t, map[string]string{envPolicy: examplePolicy}, "", "dev", "--redis", "redis://"+node,
		"--duration", "4s", "--dashboard-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	took := time.Since(start)
	t.Logf("code %d after %s\nstdout:\n%s\nstderr:\n%s", r.code, took, r.stdout, r.stderr)
	require.NotEqual(t, exitOK, r.code)
	require.Contains(t, r.stderr, "node of a Redis Cluster")
	require.Less(t, took, 2*time.Second, "the worker failed at start-up, yet dev kept running for its whole --duration")
}
