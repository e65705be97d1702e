package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
)

// setup loads the bench policy and starts the workers.
func (e Env) setup(ctx context.Context) (*keyspec.Policy, func(), error) {
	if e.Redis == nil {
		return nil, nil, errors.New("bench: Env.Redis is nil")
	}
	p, err := e.policy()
	if err != nil {
		return nil, nil, err
	}
	file := ""
	if e.Workers > 0 {
		dir, err := os.MkdirTemp("", "invalidator-bench-")
		if err != nil {
			return nil, nil, err
		}
		defer func() {
			if err != nil {
				_ = os.RemoveAll(dir)
			}
		}()
		if file, err = e.writePolicy(dir); err != nil {
			return nil, nil, err
		}
		stop, err := e.startWorkers(ctx, p, file)
		if err != nil {
			return nil, nil, err
		}
		return p, func() { stop(); _ = os.RemoveAll(dir); e.deleteQueues(p.Queues()...) }, nil
	}
	stop, err := e.startWorkers(ctx, p, file)
	if err != nil {
		return nil, nil, err
	}
	return p, func() { stop(); e.deleteQueues(p.Queues()...) }, nil
}

// deleteQueues deletes the bench's queues, tasks and all, once its workers
// have stopped: asynq keeps every queue ever enqueued to registered (in
// `invalidator queues`, the dashboard and the exporter) until it is
// deleted. Errors are ignored: the figures are measured by then, and a
// queue left behind is only clutter.
func (e Env) deleteQueues(queues ...string) {
	insp := asynq.NewInspectorFromRedisClient(e.Redis)
	for _, q := range queues {
		_ = insp.DeleteQueue(q, true)
	}
}

// start starts the workers and returns an enqueue client and a function
// that closes the client and stops the workers. The client coalesces as
// enqueue's default does when coalesce is 0, with that window when it is
// above 0, and not at all when it is below.
func (e Env) start(ctx context.Context, coalesce time.Duration) (*enqueue.Client, func(), error) {
	return e.startWith(ctx, coalesce, false)
}

// startWith is start, with the client deleting inline in the Redis under
// test (enqueue.Config.InlineDelete) when inline is set.
func (e Env) startWith(ctx context.Context, coalesce time.Duration, inline bool) (*enqueue.Client, func(), error) {
	p, stopWorkers, err := e.setup(ctx)
	if err != nil {
		return nil, nil, err
	}
	cfg := enqueue.Config{Policy: p, NoWake: e.PollOnly}
	if inline {
		cfg.InlineDelete = e.Redis
	}
	switch {
	case coalesce > 0:
		cfg.Coalesce = &enqueue.CoalesceConfig{Window: coalesce}
	case coalesce < 0:
		cfg.NoCoalesce = true
	}
	client, err := enqueue.New(e.Redis, cfg)
	if err != nil {
		stopWorkers()
		return nil, nil, err
	}
	return client, func() { _ = client.Close(); stopWorkers() }, nil
}

// LagOptions configures Lag.
type LagOptions struct {
	Rate     int           // invalidations per second; default 1000
	Duration time.Duration // default 10s
	// InlineDelete makes the producer delete each key inline
	// (enqueue.Config.InlineDelete) before enqueueing it, so the lag is
	// the inline delete's; the workers still run every task.
	InlineDelete bool
	// Coalesce is the producer's coalescing window, as
	// ThroughputOptions.Coalesce: 0 is enqueue's default, below 0 off.
	Coalesce time.Duration
}

// Lag enqueues one single-key invalidation at a time at Rate per second and
// measures, for each, the time from its hand-off to an enqueue call to the
// key's deletion, as Redis reports it through a keyspace notification (see
// pace).
//
// Its baselines are lags too, measured first in the same run at the same
// rate (for at most BaselineDuration): the producer deleting each key
// itself (direct_del, the floor), and plain asynq with one task per key at
// its default settings (naive_asynq). Throughput baselines would mean
// nothing here: the rate is fixed.
func Lag(ctx context.Context, e Env, o LagOptions) (*Result, error) {
	if o.Rate <= 0 {
		o.Rate = 1000
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	n := int(float64(o.Rate) * o.Duration.Seconds())
	baseDur := min(o.Duration, BaselineDuration)
	res := &Result{Scenario: "lag", Params: map[string]any{"rate": o.Rate, "duration": o.Duration.String(), "workers": e.Workers,
		"inline_delete": o.InlineDelete, "shards": max(e.Shards, 1), "poll_only": e.PollOnly, "baseline_duration": baseDur.String(),
		"coalesce": coalesceParam(o.Coalesce)}}
	var err error
	if res.LagBaselines, err = lagBaselines(ctx, e, o.Rate, baseDur); err != nil {
		return nil, err
	}
	client, stop, err := e.startWith(ctx, o.Coalesce, o.InlineDelete)
	if err != nil {
		return nil, err
	}
	defer stop()
	var before mark
	p, err := pace(ctx, e, "lag", o.Rate, n, func(ctx context.Context, key string) error {
		_, err := client.DeleteKeys(ctx, key)
		return err
	}, func() (err error) {
		before, err = e.mark(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	res.LagP50Ms, res.LagP90Ms, res.LagP99Ms, res.LagMaxMs = percentiles(p.lags)
	_, _, res.EnqueueP99Ms, _ = percentiles(p.calls)
	_, _, res.PaceLateP99Ms, _ = percentiles(p.late)
	res.Keys = int64(n)
	res.Seconds = p.last.Sub(p.start).Seconds()
	res.KeysPerSec = float64(n) / res.Seconds
	res.Params["achieved_rate"] = p.achievedRate
	if res.RedisCPUSeconds, err = e.cpuSince(ctx, before); err != nil {
		return nil, err
	}
	return res, nil
}

// paced is what pace measured.
type paced struct {
	lags  []time.Duration // per key: from its hand-off to a caller to its deletion
	calls []time.Duration // per send call
	late  []time.Duration // per key: from when it was due to its hand-off
	start time.Time       // when the first key was due
	last  time.Time       // when the last key was gone
	// achievedRate is keys sent per second, against the rate asked for.
	achievedRate float64
}

// pace fills n keys of a run of its own, then sends one invalidation per
// key through send, Rate per second from 8 callers, and measures each
// key's lag through keyspace notifications. before runs right before the
// first send. name prefixes the progress lines.
func pace(ctx context.Context, e Env, name string, rate, n int, send func(context.Context, string) error, before func() error) (*paced, error) {
	run := runID()
	key := func(i int) string { return fmt.Sprintf("bench:%s:lag:%d", run, i) }
	if err := fill(ctx, e.Redis, n, key); err != nil {
		return nil, err
	}
	watch, err := watchDeletes(ctx, e.Redis, fmt.Sprintf("bench:%s:lag:", run), n)
	if err != nil {
		return nil, err
	}
	defer watch.close()

	// A key's lag starts when the pacer hands it to a caller: a caller that
	// is late to take it (all 8 busy in slow calls) counts against us, the
	// pacer's own timer does not. Why not from when it was due: Go's timers
	// wake up to 1 ms late in a process that is otherwise idle (the runtime
	// sleeps in epoll_wait, which counts in whole milliseconds), which
	// added 0.5 ms at p50 and 1.1 ms at p99 to every lag, direct_del's
	// included; late reports it.
	var start time.Time
	due := func(i int) time.Time {
		return start.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second)))
	}
	calls := make([]time.Duration, n)
	handed := make([]time.Time, n)
	var sendErr error
	var errOnce sync.Once
	next := make(chan int)
	var wg sync.WaitGroup
	for range 8 { // enough callers that a slow call does not delay the schedule
		wg.Go(func() {
			for i := range next {
				t0 := time.Now()
				if err := send(ctx, key(i)); err != nil {
					errOnce.Do(func() { sendErr = err })
				}
				calls[i] = time.Since(t0)
			}
		})
	}
	if before != nil {
		if err := before(); err != nil {
			close(next)
			wg.Wait()
			return nil, err
		}
	}
	start = time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := range n {
		if d := time.Until(due(i)); d > 0 {
			time.Sleep(d)
		}
		select {
		case <-tick.C:
			e.progressf("%s: %d/%d enqueued, %d gone", name, i, n, watch.count())
		default:
		}
		handed[i] = time.Now()
		next <- i
	}
	close(next)
	wg.Wait()
	sendTime := time.Since(start)
	if sendErr != nil {
		return nil, fmt.Errorf("%s: enqueue: %w", name, sendErr)
	}
	if err := watch.wait(ctx, 30*time.Second, "last enqueue"); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &paced{lags: make([]time.Duration, n), calls: calls, late: make([]time.Duration, n), start: start,
		achievedRate: float64(n) / sendTime.Seconds()}
	for i := range n {
		g := watch.at(key(i))
		p.lags[i] = g.Sub(handed[i])
		p.late[i] = handed[i].Sub(due(i))
		if g.After(p.last) {
			p.last = g
		}
	}
	return p, nil
}

// mark is the state of the server when a scenario's measured part starts.
type mark struct {
	queues   []string // the bench class's queues
	archived int64    // tasks in their dead letters
	cpu      float64  // redis-server CPU seconds
	self     float64  // this process's CPU seconds; -1: unknown
	tasks    int64    // tasks processed from the queues, all time
}

func (e Env) mark(ctx context.Context) (mark, error) {
	p, err := e.policy()
	if err != nil {
		return mark{}, err
	}
	queues := p.Queues()
	_, archived, err := queuesDepth(ctx, e.Redis, queues)
	if err != nil {
		return mark{}, err
	}
	tasks, err := processed(ctx, e.Redis, queues)
	if err != nil {
		return mark{}, err
	}
	cpu, err := redisCPU(ctx, e.Redis)
	return mark{queues: queues, archived: archived, cpu: cpu, self: selfCPU(), tasks: tasks}, err
}

// processed sums asynq's all-time processed counters of the queues: tasks
// per key tells how much coalescing and batching merged.
func processed(ctx context.Context, rdb redis.UniversalClient, queues []string) (int64, error) {
	var n int64
	for _, q := range queues {
		v, err := rdb.Get(ctx, "asynq:{"+q+"}:processed").Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, fmt.Errorf("queue %s: processed count: %w", q, err)
		}
		n += v
	}
	return n, nil
}

// clientCPUSince is this process's CPU seconds since m (the producers, and
// the worker when it runs in this process), or 0 if unknown.
func clientCPUSince(m mark) float64 {
	now := selfCPU()
	if m.self < 0 || now < 0 {
		return 0
	}
	return now - m.self
}

// cpuSince is redis-server's CPU seconds since m.
func (e Env) cpuSince(ctx context.Context, m mark) (float64, error) {
	cpu, err := redisCPU(ctx, e.Redis)
	return cpu - m.cpu, err
}

// notifyDeletes turns on keyspace notifications for generic commands (DEL
// and UNLINK among them), on every master of a cluster, and returns a
// function that restores the setting.
func notifyDeletes(ctx context.Context, rdb redis.UniversalClient) (func(), error) {
	type saved struct {
		c   redis.UniversalClient
		old string
	}
	var done []saved
	restore := func() {
		for _, s := range done {
			_ = s.c.ConfigSet(context.Background(), "notify-keyspace-events", s.old).Err()
		}
	}
	err := forEachMaster(ctx, rdb, func(ctx context.Context, c redis.UniversalClient) error {
		old, err := c.ConfigGet(ctx, "notify-keyspace-events").Result()
		if err != nil {
			return fmt.Errorf("read notify-keyspace-events (the lag scenario needs CONFIG): %w", err)
		}
		if err := c.ConfigSet(ctx, "notify-keyspace-events", "Eg").Err(); err != nil {
			return fmt.Errorf("enable keyspace notifications (the lag scenario needs CONFIG SET): %w", err)
		}
		done = append(done, saved{c, old["notify-keyspace-events"]})
		return nil
	})
	if err != nil {
		restore()
		return nil, err
	}
	return restore, nil
}

// ThroughputOptions configures Throughput.
type ThroughputOptions struct {
	Producers   int // concurrent callers; default 32
	KeysPerCall int // default 1
	Keys        int // total keys; default 200,000
	// Coalesce is the producers' coalescing window: 0 is enqueue's
	// default (enqueue.DefaultCoalesceWindow), below 0 is off (one task per
	// call).
	Coalesce time.Duration
}

// coalesceParam is how a report names a coalescing window of
// ThroughputOptions or LagOptions.
func coalesceParam(d time.Duration) string {
	switch {
	case d < 0:
		return "off"
	case d == 0:
		return enqueue.DefaultCoalesceWindow.String()
	}
	return d.String()
}

// Throughput has Producers callers delete Keys keys, KeysPerCall per
// DeleteKeys call, as fast as they can, and measures keys/s from the first
// call until the queue is drained and every key is gone.
func Throughput(ctx context.Context, e Env, o ThroughputOptions) (*Result, error) {
	if o.Producers <= 0 {
		o.Producers = 32
	}
	if o.KeysPerCall <= 0 {
		o.KeysPerCall = 1
	}
	if o.Keys <= 0 {
		o.Keys = 200000
	}
	res := &Result{Scenario: "throughput", Params: map[string]any{
		"producers": o.Producers, "keys_per_call": o.KeysPerCall, "keys": o.Keys, "workers": e.Workers,
		"coalesce": coalesceParam(o.Coalesce), "shards": max(e.Shards, 1)}}
	var err error
	if res.Baselines, err = baselines(ctx, e, o.Keys); err != nil {
		return nil, err
	}
	client, stop, err := e.start(ctx, o.Coalesce)
	if err != nil {
		return nil, err
	}
	defer stop()
	run := runID()
	key := func(i int) string { return fmt.Sprintf("bench:%s:tp:%d", run, i) }
	if err := fill(ctx, e.Redis, o.Keys, key); err != nil {
		return nil, err
	}
	before, err := e.mark(ctx)
	if err != nil {
		return nil, err
	}
	calls := (o.Keys + o.KeysPerCall - 1) / o.KeysPerCall
	next := make(chan int, o.Producers)
	var sendErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range o.Producers {
		wg.Go(func() {
			for c := range next {
				keys := make([]string, 0, o.KeysPerCall)
				for i := c * o.KeysPerCall; i < min((c+1)*o.KeysPerCall, o.Keys); i++ {
					keys = append(keys, key(i))
				}
				if _, err := client.DeleteKeys(ctx, keys...); err != nil {
					errOnce.Do(func() { sendErr = err })
				}
			}
		})
	}
	for c := range calls {
		next <- c
	}
	close(next)
	wg.Wait()
	if sendErr != nil {
		return nil, fmt.Errorf("enqueue: %w", sendErr)
	}
	e.progressf("throughput: %d calls enqueued in %s; draining", calls, time.Since(start).Round(time.Millisecond))
	if res.RedisCPUSeconds, err = e.drain(ctx, before); err != nil {
		return nil, err
	}
	res.ClientCPUSeconds = clientCPUSince(before)
	tasks, err := processed(ctx, e.Redis, before.queues)
	if err != nil {
		return nil, err
	}
	res.Tasks = tasks - before.tasks
	res.Seconds = time.Since(start).Seconds()
	if left, err := countExisting(ctx, e.Redis, o.Keys, key); err != nil || left > 0 {
		return nil, errors.Join(err, fmt.Errorf("%d keys were not deleted", left))
	}
	res.Keys = int64(o.Keys)
	res.KeysPerSec = float64(o.Keys) / res.Seconds
	res.ratios()
	return res, nil
}

// queuesDepth sums queueDepth over queues.
func queuesDepth(ctx context.Context, rdb redis.UniversalClient, queues []string) (busy, archived int64, err error) {
	for _, q := range queues {
		b, a, err := queueDepth(ctx, rdb, q)
		if err != nil {
			return 0, 0, err
		}
		busy, archived = busy+b, archived+a
	}
	return busy, archived, nil
}

// queueDepth reads a queue's task counts straight from asynq's keys: one
// cheap pipeline, where Inspector.GetQueueInfo runs a sampling Lua script
// that would load the Redis under test.
func queueDepth(ctx context.Context, rdb redis.UniversalClient, queue string) (busy, archived int64, err error) {
	prefix := "asynq:{" + queue + "}:"
	pipe := rdb.Pipeline()
	pending := pipe.LLen(ctx, prefix+"pending")
	active := pipe.LLen(ctx, prefix+"active")
	retry := pipe.ZCard(ctx, prefix+"retry")
	scheduled := pipe.ZCard(ctx, prefix+"scheduled")
	arch := pipe.ZCard(ctx, prefix+"archived")
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, fmt.Errorf("queue %s: %w", queue, err)
	}
	return pending.Val() + active.Val() + retry.Val() + scheduled.Val(), arch.Val(), nil
}

// drain waits until the bench queues have no pending, active, scheduled or
// retrying task, fails if their dead letters grew since m, and returns
// redis-server's CPU seconds since m.
func (e Env) drain(ctx context.Context, m mark) (float64, error) {
	queue := strings.Join(m.queues, ", ")
	deadline := time.Now().Add(5 * time.Minute)
	last := time.Now()
	for time.Now().Before(deadline) {
		busy, archived, err := queuesDepth(ctx, e.Redis, m.queues)
		if err != nil {
			return 0, err
		}
		if busy == 0 {
			if archived > m.archived {
				return 0, fmt.Errorf("queue %s: %d tasks went to the dead letter during the run", queue, archived-m.archived)
			}
			return e.cpuSince(ctx, m)
		}
		if time.Since(last) > time.Second {
			e.progressf("draining: %d tasks left", busy)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("queue %s did not drain within 5 minutes", queue)
}

// countExisting counts which of the n keys still exist.
func countExisting(ctx context.Context, rdb redis.UniversalClient, n int, key func(int) string) (int, error) {
	left := 0
	for start := 0; start < n; start += 1000 {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.IntCmd, 0, 1000)
		for i := start; i < min(start+1000, n); i++ {
			cmds = append(cmds, pipe.Exists(ctx, key(i)))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, err
		}
		for _, c := range cmds {
			left += int(c.Val())
		}
	}
	return left, nil
}

// FamilyOptions configures Family.
type FamilyOptions struct {
	FamilySize int // keys in the family; default 100,000
	Keyspace   int // keys in the database in all; default 1,000,000
}

// BaselineRawScan is the family scenario's own limit: one SCAN MATCH loop
// with pipelined UNLINKs, no queue.
const BaselineRawScan = "raw_scan_unlink"

// Family deletes a family of FamilySize keys among Keyspace keys through
// the worker, and compares it with a plain SCAN+UNLINK loop on the same
// layout.
func Family(ctx context.Context, e Env, o FamilyOptions) (*Result, error) {
	if o.FamilySize <= 0 {
		o.FamilySize = 100000
	}
	if o.Keyspace < o.FamilySize {
		o.Keyspace = max(o.FamilySize, 1000000)
	}
	res := &Result{Scenario: "family", Params: map[string]any{"family_size": o.FamilySize, "keyspace": o.Keyspace, "workers": e.Workers}}
	var err error
	if res.Baselines, err = baselines(ctx, e, min(o.FamilySize, 100000)); err != nil {
		return nil, err
	}
	// Both runs see the same layout: every tenth key (or fewer) is the family's.
	layout := func(run string) func(int) string {
		every := max(o.Keyspace/o.FamilySize, 1)
		return func(i int) string {
			if i%every == 0 && i/every < o.FamilySize {
				return fmt.Sprintf("bench:%s:item:fam:%d", run, i)
			}
			return fmt.Sprintf("bench:%s:item:other:%d", run, i)
		}
	}

	rawRun := runID()
	e.progressf("baseline %s: filling %d keys", BaselineRawScan, o.Keyspace)
	if err := fill(ctx, e.Redis, o.Keyspace, layout(rawRun)); err != nil {
		return nil, err
	}
	start := time.Now()
	deleted, err := scanUnlink(ctx, e.Redis, fmt.Sprintf("bench:%s:item:fam:*", rawRun))
	if err != nil {
		return nil, err
	}
	res.Baselines[BaselineRawScan] = float64(deleted) / time.Since(start).Seconds()
	if err := cleanup(ctx, e.Redis, "bench:"+rawRun+":*"); err != nil {
		return nil, err
	}

	client, stop, err := e.start(ctx, 0)
	if err != nil {
		return nil, err
	}
	defer stop()
	run := runID()
	e.progressf("family: filling %d keys", o.Keyspace)
	if err := fill(ctx, e.Redis, o.Keyspace, layout(run)); err != nil {
		return nil, err
	}
	before, err := e.mark(ctx)
	if err != nil {
		return nil, err
	}
	start = time.Now()
	if _, err := client.DeleteFamily(ctx, "bench_item", map[string]string{"run": run, "group": "fam"}); err != nil {
		return nil, err
	}
	if res.RedisCPUSeconds, err = e.drain(ctx, before); err != nil {
		return nil, err
	}
	res.Seconds = time.Since(start).Seconds()
	left, err := cleanupCount(ctx, e.Redis, fmt.Sprintf("bench:%s:item:fam:*", run))
	if err != nil || left > 0 {
		return nil, errors.Join(err, fmt.Errorf("%d family keys were not deleted", left))
	}
	if err := cleanup(ctx, e.Redis, "bench:"+run+":*"); err != nil {
		return nil, err
	}
	res.Keys = int64(o.FamilySize)
	res.KeysPerSec = float64(o.FamilySize) / res.Seconds
	res.ratios()
	return res, nil
}

// scanUnlink is SCAN MATCH with pipelined UNLINKs, the plain way, on every
// master of a cluster.
func scanUnlink(ctx context.Context, rdb redis.UniversalClient, pattern string) (int64, error) {
	var n int64
	err := forEachMaster(ctx, rdb, func(ctx context.Context, c redis.UniversalClient) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return err
			}
			// Through rdb: on a cluster it routes each slot's UNLINK.
			d, err := unlinkBySlot(ctx, rdb, keys)
			if err != nil {
				return err
			}
			n += d
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	})
	return n, err
}

// cleanup removes a run's leftover keys.
func cleanup(ctx context.Context, rdb redis.UniversalClient, pattern string) error {
	_, err := scanUnlink(ctx, rdb, pattern)
	return err
}

// cleanupCount counts keys matching pattern, and removes them.
func cleanupCount(ctx context.Context, rdb redis.UniversalClient, pattern string) (int64, error) {
	return scanUnlink(ctx, rdb, pattern)
}
