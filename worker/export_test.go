package worker

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
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
