package worker

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/keyspec"
)

// runUntilCleanup runs w until the test ends, then requires a clean stop.
func runUntilCleanup(t testing.TB, w *Worker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// RunWorker is runUntilCleanup for the external test package.
var RunWorker = runUntilCleanup

// BumpPipelined queues one run of the worker's version bump script for key
// on pipe, with the restart margin the worker uses and a TTL of ttl, for a
// test that needs bumps back to back in the cache Redis. Its result is
// the script's {version, lead, from}.
func BumpPipelined(ctx context.Context, pipe redis.Pipeliner, key string, ttl time.Duration) *redis.Cmd {
	return bumpScript.Eval(ctx, pipe, []string{key}, ttl.Milliseconds(), keyspec.VersionRestartMargin.Microseconds())
}
