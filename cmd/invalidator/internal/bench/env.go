package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/sim"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

// Env is where a scenario runs. Queue and cache are the same Redis.
type Env struct {
	// Redis is the server under test: standalone, or a Redis Cluster
	// client, whose masters the figures then sum. Required. Benchmarks
	// write and delete keys under a "bench:<run>:" prefix and asynq queues
	// named "invalidator-bench*", which they delete at the end; use a
	// throwaway server.
	Redis redis.UniversalClient

	// Shards splits the bench class's queue into that many shard queues
	// (keyspec.Class.Shards). Default: 0, one queue.
	Shards int

	// URL of Redis, for worker processes (Workers > 0).
	URL string

	// Workers runs that many `invalidator worker` processes of Exe instead
	// of one worker in this process. Default: 0 (in-process).
	Workers int

	// Exe is the invalidator binary for worker processes. Default: this
	// executable.
	Exe string

	// PollInterval of the workers. Default: worker.DefaultPollInterval.
	PollInterval time.Duration

	// PollOnly runs the workers without wake-ups (worker.Config.PollOnly)
	// and the producers without pushing them (enqueue.Config.NoWake): the
	// polling asynq does by itself, for a before/after in one session.
	PollOnly bool

	// Progress receives one line a second while a scenario runs; nil for
	// none.
	Progress io.Writer

	// Logger for the in-process worker. Default: discard.
	Logger *slog.Logger
}

// Result is what a scenario measured. Figures that do not apply are zero
// and left out of JSON.
type Result struct {
	Scenario   string         `json:"scenario"`
	Params     map[string]any `json:"params"`
	Keys       int64          `json:"keys"`
	Seconds    float64        `json:"seconds"`
	KeysPerSec float64        `json:"keys_per_sec"`

	LagP50Ms float64 `json:"lag_p50_ms,omitempty"`
	LagP90Ms float64 `json:"lag_p90_ms,omitempty"`
	LagP99Ms float64 `json:"lag_p99_ms,omitempty"`
	LagMaxMs float64 `json:"lag_max_ms,omitempty"`

	// EnqueueP99Ms is the p99 duration of one enqueue call.
	EnqueueP99Ms float64 `json:"enqueue_p99_ms,omitempty"`
	// PaceLateP99Ms is the lag scenario's p99 of how late its pacer handed
	// a key to a caller, against the schedule: the bench's own timer, left
	// out of the lag.
	PaceLateP99Ms float64 `json:"pace_late_p99_ms,omitempty"`

	// RedisCPUSeconds is the CPU time redis-server spent during the
	// scenario itself (baselines excluded), from INFO cpu: next to Seconds
	// it tells whether Redis was the bottleneck.
	RedisCPUSeconds float64 `json:"redis_cpu_seconds"`

	// ClientCPUSeconds is the CPU time this process spent during the
	// throughput scenario: the producers, and the worker unless it runs
	// as --workers processes (Linux only; 0 elsewhere). Per key, it and
	// RedisCPUSeconds move less with the machine's load than keys/s do.
	ClientCPUSeconds float64 `json:"client_cpu_seconds,omitempty"`

	// Tasks is how many tasks the workers processed in the throughput
	// scenario (asynq's counters): Keys/Tasks is what coalescing merged.
	Tasks int64 `json:"tasks,omitempty"`

	// RedisCPUPercent and WorkersCPUPercent are the idle scenario's: the
	// CPU the queue Redis and all worker processes together spent while
	// the workers were idle, as a percentage of one core.
	RedisCPUPercent   *float64 `json:"redis_cpu_percent,omitempty"`
	WorkersCPUPercent *float64 `json:"workers_cpu_percent,omitempty"`

	// Baselines are keys/s of the baselines, measured in the same run.
	// In the outbox scenario: transactions/s of the transaction alone, at 1
	// and 8 goroutines (tx_per_s_alone_1, tx_per_s_alone_8). None in the
	// lag scenario, whose rate is fixed: see LagBaselines.
	Baselines map[string]float64 `json:"baselines,omitempty"`
	// LagBaselines are the lag scenario's baselines, measured in the same
	// run at the same rate: direct_del and naive_asynq.
	LagBaselines map[string]LagFigures `json:"lag_baselines,omitempty"`
	// Ratios are KeysPerSec / baseline, per baseline. In the outbox
	// scenario: µs per transaction of one variant over another's, at the
	// same goroutines (outbox_vs_alone_1, enqueue_after_commit_vs_alone_1,
	// outbox_vs_enqueue_after_commit_1, and the same with _8).
	Ratios map[string]float64 `json:"ratios,omitempty"`

	// The outbox scenario's transaction costs. TxUsPerTx is µs per
	// transaction by variant and goroutines (alone_1, outbox_1,
	// enqueue_after_commit_1, alone_8, ...). AddedUsPerTx is what one
	// outbox write, the recommended pgx way (outbox.BeginPgx: it rides the
	// COMMIT), adds to the transaction at 1 goroutine, against the same
	// transaction alone in the same run; AddedUsPerTxEnqueueAfterCommit
	// what an enqueue after the commit adds; the ...8 fields are the same
	// at 8 goroutines. For the outbox scenario Keys, Seconds and KeysPerSec
	// are the relay's drain of pre-filled single-key rows, and the lag
	// figures run from a commit's return to its key's deletion.
	TxUsPerTx    map[string]float64 `json:"tx_us_per_tx,omitempty"`
	AddedUsPerTx float64            `json:"added_us_per_tx,omitempty"`
	// AddedUsPerTxRounds is AddedUsPerTx per cost round, sorted: how far
	// one run's figure moves with the machine. (At 1 goroutine the variants
	// take turns transaction by transaction, so the drift of the commit's
	// flush time hits them alike.)
	AddedUsPerTxRounds []float64 `json:"added_us_per_tx_rounds,omitempty"`
	// AddedUsPerTxStatement is what the outbox write adds at 1 goroutine
	// as a statement of its own (outbox.Pgx(tx); AddedUsPerTx before the
	// write could ride the COMMIT), AddedUsPerTxBatched when it is queued
	// into the same pgx.Batch as the transaction's UPDATE
	// (outbox.PgxBatch); their ...Rounds the same per cost round, sorted,
	// and their ...8 the same at 8 goroutines. RoundTripUs is what a bare
	// SELECT sent on its own adds: one round trip, the floor under
	// AddedUsPerTxStatement.
	AddedUsPerTxStatement           float64   `json:"added_us_per_tx_statement,omitempty"`
	AddedUsPerTxStatementRounds     []float64 `json:"added_us_per_tx_statement_rounds,omitempty"`
	AddedUsPerTxBatched             float64   `json:"added_us_per_tx_batched,omitempty"`
	AddedUsPerTxBatchedRounds       []float64 `json:"added_us_per_tx_batched_rounds,omitempty"`
	RoundTripUs                     float64   `json:"round_trip_us,omitempty"`
	AddedUsPerTxEnqueueAfterCommit  float64   `json:"added_us_per_tx_enqueue_after_commit,omitempty"`
	AddedUsPerTx8                   float64   `json:"added_us_per_tx_8,omitempty"`
	AddedUsPerTxStatement8          float64   `json:"added_us_per_tx_statement_8,omitempty"`
	AddedUsPerTxBatched8            float64   `json:"added_us_per_tx_batched_8,omitempty"`
	AddedUsPerTxEnqueueAfterCommit8 float64   `json:"added_us_per_tx_enqueue_after_commit_8,omitempty"`
	// RelayInvalidationsPerS is single-key outbox rows one relay moved to
	// the queue per second (outbox scenario).
	RelayInvalidationsPerS float64 `json:"relay_invalidations_per_s,omitempty"`

	// The cdc scenario: CDCChangesPerS is row changes per second from a
	// reader's start to the last event task on the queue (also KeysPerSec);
	// the Lag fields are commit -> key gone through invalidator cdc, and
	// OutboxLag... the same through the outbox, in the same run, next to
	// RelayInvalidationsPerS.
	CDCChangesPerS float64 `json:"cdc_changes_per_s,omitempty"`
	OutboxLagP50Ms float64 `json:"outbox_lag_p50_ms,omitempty"`
	OutboxLagP99Ms float64 `json:"outbox_lag_p99_ms,omitempty"`
}

func (r *Result) ratios() {
	r.Ratios = make(map[string]float64, len(r.Baselines))
	for name, b := range r.Baselines {
		if b > 0 {
			r.Ratios[name] = r.KeysPerSec / b
		}
	}
}

const benchQueue = "invalidator-bench"

// policyYAML is the built-in policy of the benchmarks: one class on its own
// queue (in shards shards), one family for the family scenario, and the
// event the cdc scenario's table publishes.
func policyYAML(shards int) string {
	return `version: 1
classes:
  bench: {ttl: 1m, queue: ` + benchQueue + `, max_retry: 3, timeout: 5m, shards: ` + strconv.Itoa(max(shards, 1)) + `}
families:
  bench_item:
    template: "bench:{run}:item:{group}:{id}"
    class: bench
events:
  bench.row_changed:
    attributes: [run, group, id]
    invalidates: [bench_item]
`
}

func (e Env) policy() (*keyspec.Policy, error) {
	return keyspec.Parse("bench-policy.yaml", []byte(policyYAML(e.Shards)))
}

// logger is Env.Logger, or one that discards.
func (e Env) logger() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

func (e Env) progressf(format string, args ...any) {
	if e.Progress != nil {
		fmt.Fprintf(e.Progress, format+"\n", args...)
	}
}

// runID names one run's keys, so runs never see each other's.
func runID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startWorkers starts the workers of Env and returns a stop function that
// waits for them.
func (e Env) startWorkers(ctx context.Context, p *keyspec.Policy, policyFile string) (func(), error) {
	// 0 is the worker's default, in process and on the command line alike.
	poll := e.PollInterval
	if e.Workers <= 0 {
		w, err := sim.StartWorker(ctx, worker.Config{Queue: e.Redis, Policy: p, Logger: e.logger(), PollInterval: poll, PollOnly: e.PollOnly})
		if err != nil {
			return nil, err
		}
		return func() { _ = w.Stop() }, nil
	}
	_, stop, err := e.startProcs(policyFile, poll)
	return stop, err
}

// startProcs starts Env.Workers worker processes with the policy file and
// returns them and a function that stops them and waits.
func (e Env) startProcs(policyFile string, poll time.Duration) ([]*exec.Cmd, func(), error) {
	exe := e.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, nil, fmt.Errorf("find the invalidator binary for worker processes: %w", err)
		}
	}
	if e.URL == "" {
		return nil, nil, errors.New("worker processes need the Redis URL")
	}
	var procs []*exec.Cmd
	stop := func() {
		for _, c := range procs {
			_ = c.Process.Signal(os.Interrupt)
		}
		for _, c := range procs {
			_ = c.Wait()
		}
	}
	for range e.Workers {
		args := []string{"worker", "--redis", e.URL, "--policy", policyFile, "--poll-interval", poll.String(), "--log-level", "error"}
		if e.PollOnly {
			args = append(args, "--poll-only")
		}
		c := exec.Command(exe, args...)
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			stop()
			return nil, nil, fmt.Errorf("start worker process: %w", err)
		}
		procs = append(procs, c)
	}
	return procs, stop, nil
}

// writePolicy writes the bench policy for worker processes.
func (e Env) writePolicy(dir string) (string, error) {
	path := filepath.Join(dir, "bench-policy.yaml")
	return path, os.WriteFile(path, []byte(policyYAML(e.Shards)), 0o600)
}

// fill sets n keys named by key(i), pipelined.
func fill(ctx context.Context, rdb redis.UniversalClient, n int, key func(int) string) error {
	const batch = 5000
	for start := 0; start < n; start += batch {
		pipe := rdb.Pipeline()
		for i := start; i < min(start+batch, n); i++ {
			pipe.Set(ctx, key(i), "1", 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("fill keys: %w", err)
		}
	}
	return nil
}

// redisCPU reads redis-server's CPU seconds (user + sys) so far, summed
// over the masters of a cluster.
func redisCPU(ctx context.Context, rdb redis.UniversalClient) (float64, error) {
	var total float64
	err := forEachMaster(ctx, rdb, func(ctx context.Context, c redis.UniversalClient) error {
		info, err := c.Info(ctx, "cpu").Result()
		if err != nil {
			return fmt.Errorf("INFO cpu: %w", err)
		}
		for line := range strings.Lines(info) {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return fmt.Errorf("INFO cpu %s: %w", k, err)
				}
				total += f
			}
		}
		return nil
	})
	return total, err
}

// percentiles returns the p50, p90, p99 and max of ds in milliseconds
// (sim's nearest-rank quantiles, which dev and check-freshness use too).
func percentiles(ds []time.Duration) (p50, p90, p99, maxMs float64) {
	q := sim.Percentiles(ds, 0.5, 0.9, 0.99, 1)
	return ms(q[0]), ms(q[1]), ms(q[2]), ms(q[3])
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
