package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/sim"
	"github.com/invalidator/invalidator/internal/wake"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

// IdleOptions configures Idle.
type IdleOptions struct {
	// Duration is how long the idle workers are measured. Default: 10s.
	Duration time.Duration
	// Warmup is how long the workers run before the measurement starts,
	// so their start (connecting, registering, the first rounds) is not
	// counted. Default: 3s.
	Warmup time.Duration
}

// idleQueues are the idle scenario's queues: three, as in
// examples/policy.yaml, since an idle poll costs one script call per queue.
var idleQueues = []string{benchQueue + "-critical", benchQueue, benchQueue + "-bulk"}

// idlePolicyYAML is the idle scenario's policy: one class per idle queue.
const idlePolicyYAML = `version: 1
default_class: standard
classes:
  critical: {ttl: 1m, queue: ` + benchQueue + `-critical, weight: 6}
  standard: {ttl: 1m, queue: ` + benchQueue + `, weight: 3}
  bulk: {ttl: 1m, queue: ` + benchQueue + `-bulk, weight: 1}
`

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// Idle runs Env.Workers worker processes with nothing to do and measures,
// over Duration, the CPU the queue Redis and the workers spend, as a
// percentage of one core. Linux only (the workers' CPU comes from /proc).
func Idle(ctx context.Context, e Env, o IdleOptions) (*Result, error) {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Warmup <= 0 {
		o.Warmup = 3 * time.Second
	}
	if e.Workers < 1 {
		return nil, errors.New("bench idle needs worker processes (--workers 1 or more)")
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return nil, fmt.Errorf("bench idle reads the workers' CPU from /proc (Linux only): %w", err)
	}
	if _, err := keyspec.Parse("idle-policy.yaml", []byte(idlePolicyYAML)); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "invalidator-bench-idle-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	file := dir + "/idle-policy.yaml"
	if err := os.WriteFile(file, []byte(idlePolicyYAML), 0o600); err != nil {
		return nil, err
	}
	// The workers default a 0 themselves (see startWorkers); the report
	// names the value they use.
	res := &Result{Scenario: "idle", Params: map[string]any{"workers": e.Workers, "queues": len(idleQueues),
		"duration": o.Duration.String(), "poll_interval": cmp.Or(e.PollInterval, worker.DefaultPollInterval).String(), "poll_only": e.PollOnly}}
	procs, stop, err := e.startProcs(file, e.PollInterval)
	if err != nil {
		return nil, err
	}
	defer func() {
		stop()
		e.cleanupIdle(context.WithoutCancel(ctx))
	}()
	e.progressf("%d idle workers started; warming up for %s", e.Workers, o.Warmup)
	if err := sim.Sleep(ctx, o.Warmup); err != nil {
		return nil, err
	}
	redis0, err := redisCPU(ctx, e.Redis)
	if err != nil {
		return nil, err
	}
	workers0, err := procsCPU(procs)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	e.progressf("measuring for %s", o.Duration)
	if err := sim.Sleep(ctx, o.Duration); err != nil {
		return nil, err
	}
	redis1, err := redisCPU(ctx, e.Redis)
	if err != nil {
		return nil, err
	}
	workers1, err := procsCPU(procs)
	if err != nil {
		return nil, err
	}
	secs := time.Since(start).Seconds()
	res.Seconds = secs
	res.RedisCPUSeconds = redis1 - redis0
	redisPct, workersPct := 100*(redis1-redis0)/secs, 100*(workers1-workers0)/secs
	res.RedisCPUPercent, res.WorkersCPUPercent = &redisPct, &workersPct
	return res, nil
}

// procsCPU is the CPU seconds (user + system) the processes have used.
func procsCPU(procs []*exec.Cmd) (float64, error) {
	var total float64
	for _, c := range procs {
		s, err := pidCPU(c.Process.Pid)
		if err != nil {
			return 0, fmt.Errorf("worker process %d exited early? %w", c.Process.Pid, err)
		}
		total += s
	}
	return total, nil
}

// pidCPU is the CPU seconds (user + system) process pid has used, from
// /proc (Linux only).
func pidCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields count from
	// after its closing parenthesis: state is field 3, utime 14, stime 15.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return float64(ticks) / clockTicks, nil
}

// selfCPU is this process's CPU seconds so far, or -1 where /proc cannot
// tell (not Linux): the figures built on it are then left out.
func selfCPU() float64 {
	s, err := pidCPU(os.Getpid())
	if err != nil {
		return -1
	}
	return s
}

// cleanupIdle removes the idle queues from asynq's registry and their wake
// lists, so a run leaves nothing behind.
func (e Env) cleanupIdle(ctx context.Context) {
	insp := asynq.NewInspectorFromRedisClient(e.Redis)
	for _, q := range idleQueues {
		_ = insp.DeleteQueue(q, true)
		_ = e.Redis.Del(ctx, wake.Key(q)).Err()
	}
}
