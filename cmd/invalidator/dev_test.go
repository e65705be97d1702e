package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/devstack"
	"github.com/invalidator/invalidator/internal/pgtest"
)

// `make demo` in miniature: the embedded stack, a short workload, a summary
// with no stale read, and exit 0. The lag bound is generous: under the race
// detector on a loaded machine an invalidation can take over the demo's 1s
// to apply, which is lateness, not the stale write-back this test is about
// (the final check's stale_cached catches that whatever the bound).
func TestDevWorkload(t *testing.T) {
	t.Parallel()
	r := invoke(t, map[string]string{envPolicy: examplePolicy}, "", "dev", "--workload", "--duration", "2s", "--json",
		"--lag-bound", "30s", "--dashboard-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	for _, want := range []string{"embedded, in memory", "dashboard  http://127.0.0.1:", "/monitoring/", "metrics    http://127.0.0.1:", "stale reads 0"} {
		require.Contains(t, r.stdout, want)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var sum devstack.Summary
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &sum), r.stdout)
	require.Positive(t, sum.Writes)
	require.Positive(t, sum.Reads)
	require.Zero(t, sum.StaleReads)
	require.True(t, sum.Drained)
	require.Zero(t, sum.StaleCached)
}

// With --source-dsn the workload's writes publish through the outbox, and
// the run still ends with no stale read and its queues and outbox drained.
func TestDevWorkloadOutbox(t *testing.T) {
	t.Parallel()
	pg := pgtest.NewDB(t)
	r := invoke(t, map[string]string{envPolicy: examplePolicy}, "", "dev", "--workload", "--duration", "2s", "--json",
		"--lag-bound", "30s", "--source-dsn", pg.DSN, "--dashboard-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "source     PostgreSQL of --source-dsn")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var sum devstack.Summary
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &sum), r.stdout)
	require.Positive(t, sum.Writes)
	require.Positive(t, sum.Invalidations, "the relayed invalidations were applied")
	require.Zero(t, sum.StaleReads)
	require.True(t, sum.Drained)
	require.Positive(t, sum.Checked)
	require.Zero(t, sum.StaleCached)
	require.NotContains(t, r.stdout+r.stderr, pg.DSN)
}

func TestDevRefusesExposedAddresses(t *testing.T) {
	t.Parallel()
	r := invoke(t, map[string]string{envPolicy: examplePolicy}, "", "dev", "--duration", "1s", "--dashboard-addr", "0.0.0.0:0")
	require.Equal(t, exitUsage, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "not loopback")
}
