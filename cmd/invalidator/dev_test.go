package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/devstack"
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
	// With --json, the addresses and status lines are on stderr, and
	// stdout is the summary alone.
	for _, want := range []string{"embedded, in memory", "dashboard  http://127.0.0.1:", "/monitoring/", "metrics    http://127.0.0.1:", "stale reads 0"} {
		require.Contains(t, r.stderr, want)
	}
	sum := devSummary(t, r)
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
	require.Contains(t, r.stderr, "source     PostgreSQL of --source-dsn")
	sum := devSummary(t, r)
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

// devSummary parses the --json summary, which must be all of stdout: one
// JSON document and nothing else.
func devSummary(t *testing.T, r result) devstack.Summary {
	t.Helper()
	return oneJSON[devstack.Summary](t, r.stdout)
}

// oneJSON decodes stdout, which must be exactly one JSON document.
func oneJSON[T any](t *testing.T, stdout string) T {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	var v T
	require.NoError(t, dec.Decode(&v), "stdout is not one JSON document:\n%s", stdout)
	_, err := dec.Token()
	require.ErrorIs(t, err, io.EOF, "stdout holds more than one JSON document:\n%s", stdout)
	return v
}

// Without --workload, dev prints the whole command to try, with its
// Redis's URL: a hint without --redis would write to the default Redis on
// 6379, not to the dev stack. --redis-port pins the embedded Redis.
func TestDevHintNamesItsRedis(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	r := invoke(t, map[string]string{envPolicy: examplePolicy}, "", "dev", "--duration", "1s", "--redis-port", fmt.Sprint(port),
		"--dashboard-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	require.Contains(t, r.stdout, "invalidator enqueue event product.updated id=7 --redis "+url+" --policy "+examplePolicy)

	r = invoke(t, map[string]string{envPolicy: examplePolicy, envRedisURL: "redis://127.0.0.1:1/0"}, "", "dev", "--redis-port", "6390")
	require.Equal(t, exitUsage, r.code, r.stdout+r.stderr)
	r = invoke(t, map[string]string{envPolicy: examplePolicy}, "", "dev", "--json")
	require.Equal(t, exitUsage, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "needs --workload")
}

// freePort is a loopback TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// The demo's audits find nothing while writes and invalidations run: an
// invalidation in flight is re-checked, not counted (no false positives).
// The re-check waits 10s, above the lag of a loaded machine under the race
// detector (p99 ≤5s seen with 1s, which counted a late invalidation), so
// the run takes about 15s, its first audit's re-check included.
func TestDevWorkloadAuditClean(t *testing.T) {
	t.Parallel()
	r := invoke(t, map[string]string{envPolicy: examplePolicy}, "", "dev", "--workload", "--duration", "5s", "--json",
		"--lag-bound", "30s", "--audit-every", "1s", "--audit-recheck", "10s", "--dashboard-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "audit sampled")
	sum := devSummary(t, r)
	require.Positive(t, sum.Writes)
	require.NotNil(t, sum.Audit, r.stdout)
	require.Positive(t, sum.Audit.Sampled)
	require.Zero(t, sum.Audit.Inconsistent)
	require.Zero(t, sum.DroppedInvalidations)
	require.Zero(t, sum.StaleCached)
}

// A write path that forgets its invalidations is what the audit exists to
// find. A 5s run makes about 250 writes, so 0.02 would drop about 5, some
// on keys nobody cached and some too late for an audit: 0.2 makes the
// finding certain in a short run.
func TestDevWorkloadAuditFindsDroppedInvalidations(t *testing.T) {
	t.Parallel()
	r := invoke(t, map[string]string{envPolicy: examplePolicy}, "", "dev", "--workload", "--duration", "5s", "--json",
		"--lag-bound", "30s", "--audit-every", "1s", "--audit-recheck", "2s", "--drop-invalidations", "0.2",
		"--dashboard-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	require.Equal(t, exitFailure, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "the audit found")
	sum := devSummary(t, r)
	require.Positive(t, sum.DroppedInvalidations)
	require.NotNil(t, sum.Audit, r.stdout)
	require.Positive(t, sum.Audit.Inconsistent)
}

func TestDevDropInvalidationsUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--workload", "--drop-invalidations", "1.5"},
		{"--workload", "--drop-invalidations", "-0.1"},
		{"--workload", "--drop-invalidations", "NaN"},
		{"--drop-invalidations", "0.1"},
		{"--workload", "--drop-invalidations", "0.1", "--source-dsn", "postgres://u@127.0.0.1:1/db"},
		{"--workload", "--audit-recheck", "-1s"},
	} {
		r := invoke(t, map[string]string{envPolicy: examplePolicy}, "", append([]string{"dev", "--duration", "1s"}, args...)...)
		require.Equal(t, exitUsage, r.code, "%v: %s", args, r.stdout+r.stderr)
	}
}

// An error says "load policy" once.
func TestPolicyErrorSaysItOnce(t *testing.T) {
	t.Parallel()
	r := invoke(t, map[string]string{envPolicy: "/nonexistent/policy.yaml"}, "", "enqueue", "keys", "a")
	require.Equal(t, exitUsage, r.code, r.stderr)
	require.Equal(t, 1, strings.Count(r.stderr, "load policy"), r.stderr)
}
