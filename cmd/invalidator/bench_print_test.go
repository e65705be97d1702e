package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/bench"
)

// The report is for a person: settings as words, no Go map, and in the lag
// scenario lag baselines in the lag table instead of throughput ratios.
func TestBenchReportLag(t *testing.T) {
	t.Parallel()
	r := &bench.Result{Scenario: "lag", Keys: 10000, Seconds: 10.2, RedisCPUSeconds: 1.5,
		Params: map[string]any{"rate": 1000, "duration": "10s", "workers": 0, "inline_delete": false, "shards": 1,
			"poll_only": false, "baseline_duration": "5s", "achieved_rate": 999.9731},
		LagP50Ms: 1.5, LagP90Ms: 2.25, LagP99Ms: 4, LagMaxMs: 9.25, EnqueueP99Ms: 0.4,
		LagBaselines: map[string]bench.LagFigures{
			bench.BaselineDirectDel:  {P50Ms: 0.2, P90Ms: 0.3, P99Ms: 0.5, MaxMs: 1},
			bench.BaselineNaiveAsynq: {P50Ms: 500, P90Ms: 900, P99Ms: 990, MaxMs: 1001},
		}}
	var out bytes.Buffer
	require.NoError(t, printResult(&out, r))
	got := out.String()
	require.NotContains(t, got, "map[")
	require.NotContains(t, got, "ours/baseline", "throughput ratios mean nothing at a fixed rate")
	require.NotContains(t, got, "raw_unlink")
	lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	require.Equal(t, []string{
		"scenario    lag (baseline duration 5s, duration 10s, inline delete off, poll only off, rate 1000, shards 1, workers 0)",
		"sent        10000 invalidations at 999.97/s",
		"redis cpu   1.50s busy in 10.20s (15% of one core)",
		"enqueue     p99 0.400ms per call",
		"lag, from when each invalidation was due to its key gone (ms):",
		"                     p50       p90       p99       max",
		"  invalidator       1.50      2.25      4.00      9.25",
		"baselines (same run, same rate, for 5s):",
		"  direct_del        0.20      0.30      0.50      1.00   the producer DELs each key itself: the floor",
		"  naive_asynq     500.00    900.00    990.00   1001.00   plain asynq, a task per key, default settings (1 s poll)",
	}, lines)
}

func TestBenchReportThroughput(t *testing.T) {
	t.Parallel()
	r := &bench.Result{Scenario: "throughput", Keys: 200000, Seconds: 2, KeysPerSec: 100000, RedisCPUSeconds: 1,
		Params:    map[string]any{"producers": 32, "keys_per_call": 1, "keys": 200000, "workers": 0, "coalesce": "1ms", "shards": 1},
		Baselines: map[string]float64{bench.BaselineRawUnlink: 2e6, bench.BaselineNaiveAsynq: 8000},
		Ratios:    map[string]float64{bench.BaselineRawUnlink: 0.05, bench.BaselineNaiveAsynq: 12.5}}
	var out bytes.Buffer
	require.NoError(t, printResult(&out, r))
	got := out.String()
	require.NotContains(t, got, "map[")
	require.Contains(t, got, "scenario    throughput (coalesce 1ms, keys 200000, keys per call 1, producers 32, shards 1, workers 0)\n")
	require.Contains(t, got, "throughput  100000 keys/s\n")
	require.Contains(t, got, "  raw_unlink          2000000 keys/s   ours/baseline 0.05\n")
	require.Contains(t, got, "  naive_asynq            8000 keys/s   ours/baseline 12.50\n")
}

// The outbox report names each way of writing, the recommended one first,
// and the per-round spread of all three.
func TestBenchReportOutbox(t *testing.T) {
	t.Parallel()
	tx := map[string]float64{}
	for _, g := range []string{"_1", "_8"} {
		for v, us := range map[string]float64{bench.VariantAlone: 400, bench.VariantOutbox: 450,
			bench.VariantOutboxStatement: 520, bench.VariantOutboxBatched: 460, bench.VariantEnqueueAfterCommit: 560,
			bench.VariantOutboxNoNotify: 500, bench.VariantRoundTrip: 470} {
			tx[v+g] = us
		}
	}
	r := &bench.Result{Scenario: "outbox", Params: map[string]any{"tx": 3000}, TxUsPerTx: tx,
		AddedUsPerTxRounds: []float64{40, 60}, AddedUsPerTxStatementRounds: []float64{110, 130},
		AddedUsPerTxBatchedRounds: []float64{50, 70}}
	var out bytes.Buffer
	require.NoError(t, printResult(&out, r))
	got := out.String()
	require.Contains(t, got, "  outbox write             450.0 µs   adds   +50.0 µs   x1.12 of alone   (rides the COMMIT: outbox.BeginPgx)\n")
	require.Contains(t, got, "  outbox statement         520.0 µs   adds  +120.0 µs   x1.30 of alone   (its own statement: outbox.Pgx)\n")
	require.Contains(t, got, "  outbox write batched     460.0 µs   adds   +60.0 µs   x1.15 of alone   (in the UPDATE's pgx.Batch)\n")
	require.Contains(t, got, "added at 1 goroutine per round: outbox write 40-60 µs, its own statement 110-130 µs, batched 50-70 µs\n")
}
