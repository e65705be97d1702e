package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
)

// runCheckFreshness runs the command alone, as the root would with --redis.
func runCheckFreshness(t *testing.T, redisURL string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	a := &app{
		streams:  streams{out: &out, err: io.Discard},
		getenv:   func(string) string { return "" },
		redisURL: redisURL,
		log:      slog.New(slog.DiscardHandler),
	}
	cmd := newCheckFreshnessCmd(a)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

func TestCheckFreshnessJSON(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	out, err := runCheckFreshness(t, db.URL, "--json", "--duration", "1s", "--writers", "2", "--readers", "4",
		"--hot-key-readers", "100", "--forced-races", "1", "--lag-bound", "1s")
	require.NoError(t, err, out)
	var rep map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	for _, kind := range []string{"cacheaside", "control"} {
		k := rep[kind].(map[string]any)
		for _, f := range []string{"reads", "stale_reads", "staleness_p99_ms"} {
			require.Contains(t, k, f)
		}
	}
	require.Zero(t, rep["cacheaside"].(map[string]any)["stale_reads"])
	require.Positive(t, rep["control"].(map[string]any)["stale_reads"])
	require.Contains(t, rep, "loader_calls_hot_key")
}

func TestCheckFreshnessUsage(t *testing.T) {
	t.Parallel()
	_, err := runCheckFreshness(t, "redis://127.0.0.1:1/0", "--writers", "0")
	var ue *usageError
	require.ErrorAs(t, err, &ue)
	require.ErrorContains(t, err, "--writers must be at least 1")
}

// With --source-dsn the writes' invalidations go through the outbox, and
// cacheaside still serves no stale read.
func TestCheckFreshnessOutbox(t *testing.T) {
	t.Parallel()
	pg := pgtest.NewDB(t)
	db := redistest.NewDB(t)
	out, err := runCheckFreshness(t, db.URL, "--json", "--source-dsn", pg.DSN, "--duration", "1s", "--writers", "2",
		"--readers", "4", "--hot-key-readers", "50", "--forced-races", "1", "--lag-bound", "1s")
	require.NoError(t, err, out)
	var rep map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.Equal(t, "outbox", rep["invalidations"])
	require.Zero(t, rep["cacheaside"].(map[string]any)["stale_reads"])
	require.EqualValues(t, 1, rep["control"].(map[string]any)["forced_race_stale_reads"])
	var left int
	require.NoError(t, pg.Pool.QueryRow(t.Context(),
		`SELECT count(*) FROM pg_tables WHERE tablename LIKE 'invalidator_freshness_outbox%'`).Scan(&left))
	require.Zero(t, left, "the run drops its outbox")
}
