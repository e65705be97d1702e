package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invalidator/invalidator/worker"
)

// Lag baseline names (Result.LagBaselines).
const (
	// BaselineDirectDel is the producer deleting each key itself, one DEL
	// per key: an invalidation cannot land sooner.
	BaselineDirectDel = "direct_del"
	// BaselineNaiveAsynq (also a throughput baseline) is in the lag
	// scenario plain asynq with one task per key and its default server
	// settings, whose processor polls an empty queue once a second.
)

// BaselineDuration bounds how long each lag baseline sends.
const BaselineDuration = 5 * time.Second

// LagFigures are lag percentiles in milliseconds.
type LagFigures struct {
	P50Ms float64 `json:"lag_p50_ms"`
	P90Ms float64 `json:"lag_p90_ms"`
	P99Ms float64 `json:"lag_p99_ms"`
	MaxMs float64 `json:"lag_max_ms"`
	// CallP99Ms is the p99 of the producer's call (a DEL; asynq's own
	// enqueue), beside which the lag scenario's enqueue_p99_ms reads.
	CallP99Ms float64 `json:"call_p99_ms"`
}

func lagFigures(p *paced) LagFigures {
	var f LagFigures
	f.P50Ms, f.P90Ms, f.P99Ms, f.MaxMs = percentiles(p.lags)
	_, _, f.CallP99Ms, _ = percentiles(p.calls)
	return f
}

// lagBaselines measures the lag of direct_del and naive_asynq at rate per
// second for d each, as Lag measures its own.
func lagBaselines(ctx context.Context, e Env, rate int, d time.Duration) (map[string]LagFigures, error) {
	n := max(int(float64(rate)*d.Seconds()), 1)
	out := make(map[string]LagFigures, 2)

	e.progressf("baseline %s: %d keys at %d/s", BaselineDirectDel, n, rate)
	p, err := pace(ctx, e, "baseline "+BaselineDirectDel, rate, n, func(ctx context.Context, key string) error {
		return e.Redis.Del(ctx, key).Err()
	}, nil)
	if err != nil {
		return nil, err
	}
	out[BaselineDirectDel] = lagFigures(p)

	e.progressf("baseline %s: %d tasks at %d/s", BaselineNaiveAsynq, n, rate)
	const queue = "invalidator-bench-naive-lag"
	// Default settings but for the queue and the logger: asynq's own log
	// lines would otherwise land in the report.
	srv := asynq.NewServerFromRedisClient(e.Redis, asynq.Config{Queues: map[string]int{queue: 1},
		Logger: worker.AsynqLogger(e.logger()), LogLevel: asynq.ErrorLevel})
	if err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		return e.Redis.Del(ctx, string(t.Payload())).Err()
	})); err != nil {
		return nil, fmt.Errorf("baseline %s: %w", BaselineNaiveAsynq, err)
	}
	defer func() {
		srv.Shutdown()
		_ = asynq.NewInspectorFromRedisClient(e.Redis).DeleteQueue(queue, true)
	}()
	client := asynq.NewClientFromRedisClient(e.Redis)
	p, err = pace(ctx, e, "baseline "+BaselineNaiveAsynq, rate, n, func(ctx context.Context, key string) error {
		_, err := client.EnqueueContext(ctx, asynq.NewTask("bench:del", []byte(key)), asynq.Queue(queue))
		return err
	}, nil)
	if err != nil {
		return nil, err
	}
	out[BaselineNaiveAsynq] = lagFigures(p)
	return out, nil
}
