package bench

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/worker"
)

// Baseline names.
const (
	BaselineRawUnlink  = "raw_unlink"
	BaselineDelPerKey  = "del_per_key"
	BaselineNaiveAsynq = "naive_asynq"
)

// baselines measures all three on n keys each (del_per_key and naive_asynq
// on fewer, bounded in time: they are orders of magnitude slower).
func baselines(ctx context.Context, e Env, n int) (map[string]float64, error) {
	out := make(map[string]float64, 3)
	run := runID()
	key := func(i int) string { return fmt.Sprintf("bench:%s:base:%d", run, i) }

	e.progressf("baseline %s: %d keys", BaselineRawUnlink, n)
	v, err := rawUnlink(ctx, e.Redis, n, key)
	if err != nil {
		return nil, err
	}
	out[BaselineRawUnlink] = v

	small := min(n, 20000)
	e.progressf("baseline %s: up to %d keys, at most 3s", BaselineDelPerKey, small)
	if out[BaselineDelPerKey], err = delPerKey(ctx, e.Redis, small, key); err != nil {
		return nil, err
	}
	e.progressf("baseline %s: up to %d tasks", BaselineNaiveAsynq, small)
	if out[BaselineNaiveAsynq], err = naiveAsynq(ctx, e.Redis, e.logger(), small, key); err != nil {
		return nil, err
	}
	return out, nil
}

// rawUnlink is the physical limit: pipelined UNLINKs of 1000 keys each.
func rawUnlink(ctx context.Context, rdb redis.UniversalClient, n int, key func(int) string) (float64, error) {
	if err := fill(ctx, rdb, n, key); err != nil {
		return 0, err
	}
	start := time.Now()
	pipe := rdb.Pipeline()
	batch := make([]string, 0, 1000)
	for i := range n {
		batch = append(batch, key(i))
		if len(batch) == cap(batch) || i == n-1 {
			unlinkCmds(ctx, rdb, pipe, batch)
			batch = make([]string, 0, 1000)
		}
		if pipe.Len() == 16 || i == n-1 {
			if _, err := pipe.Exec(ctx); err != nil {
				return 0, fmt.Errorf("baseline %s: %w", BaselineRawUnlink, err)
			}
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// delPerKey is the naive client: one DEL per round trip.
func delPerKey(ctx context.Context, rdb redis.UniversalClient, n int, key func(int) string) (float64, error) {
	if err := fill(ctx, rdb, n, key); err != nil {
		return 0, err
	}
	start := time.Now()
	done := 0
	for i := range n {
		if err := rdb.Del(ctx, key(i)).Err(); err != nil {
			return 0, fmt.Errorf("baseline %s: %w", BaselineDelPerKey, err)
		}
		done++
		if time.Since(start) > 3*time.Second {
			break
		}
	}
	rate := float64(done) / time.Since(start).Seconds()
	_, err := unlinkBySlot(ctx, rdb, keysOf(done, n, key))
	return rate, err
}

// naiveAsynq is asynq used plainly: one task per key, default server
// settings (1 s TaskCheckInterval, concurrency = cores), a handler that
// DELs its key.
func naiveAsynq(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger, n int, key func(int) string) (float64, error) {
	if err := fill(ctx, rdb, n, key); err != nil {
		return 0, err
	}
	const queue = "invalidator-bench-naive"
	var left atomic.Int64
	left.Store(int64(n))
	finished := make(chan struct{})
	// Default settings but for the queue and the logger: asynq's own log
	// lines would otherwise land in the report.
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Queues: map[string]int{queue: 1},
		Logger: worker.AsynqLogger(log), LogLevel: asynq.ErrorLevel})
	err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if err := rdb.Del(ctx, string(t.Payload())).Err(); err != nil {
			return err
		}
		if left.Add(-1) == 0 {
			close(finished)
		}
		return nil
	}))
	if err != nil {
		return 0, fmt.Errorf("baseline %s: %w", BaselineNaiveAsynq, err)
	}
	defer func() {
		srv.Shutdown()
		_ = asynq.NewInspectorFromRedisClient(rdb).DeleteQueue(queue, true)
	}()
	client := asynq.NewClientFromRedisClient(rdb)
	start := time.Now()
	for i := range n {
		if _, err := client.EnqueueContext(ctx, asynq.NewTask("bench:del", []byte(key(i))), asynq.Queue(queue)); err != nil {
			return 0, fmt.Errorf("baseline %s: enqueue: %w", BaselineNaiveAsynq, err)
		}
	}
	select {
	case <-finished:
	case <-time.After(time.Minute):
		return 0, fmt.Errorf("baseline %s: %d of %d tasks still pending after a minute", BaselineNaiveAsynq, left.Load(), n)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func keysOf(from, to int, key func(int) string) []string {
	keys := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		keys = append(keys, key(i))
	}
	if len(keys) == 0 {
		return []string{key(to)} // UNLINK needs a key; a missing one is fine
	}
	return keys
}
