package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// A worker of 'invalidator dev' that fails at once ends the run at once,
// with its error, rather than leaving a stack that invalidates nothing for
// the whole --duration. Here the worker cannot tell whether the queue Redis
// is a cluster node: its ACL user may not run INFO, which the CLI lets pass
// but the worker, whose scans depend on the answer, does not.
func TestDevStopsWhenTheWorkerFails(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	user := "noinfo-" + redistest.Prefix(t)
	require.NoError(t, db.Client.Do(t.Context(), "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-info").Err())
	t.Cleanup(func() { _ = db.Client.Do(context.Background(), "ACL", "DELUSER", user).Err() })
	url := "redis://" + user + ":pw@" + strings.TrimPrefix(db.URL, "redis://")

	start := time.Now()
	r := invoke(t, map[string]string{envPolicy: examplePolicy}, "", "dev", "--redis", url,
		"--duration", "4s", "--dashboard-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	took := time.Since(start)
	t.Logf("code %d after %s\nstdout:\n%s\nstderr:\n%s", r.code, took, r.stdout, r.stderr)
	require.Equal(t, exitFailure, r.code)
	require.Contains(t, r.stderr, "NOPERM")
	require.Less(t, took, 2*time.Second, "the worker failed at start-up, yet dev kept running for its whole --duration")
}
