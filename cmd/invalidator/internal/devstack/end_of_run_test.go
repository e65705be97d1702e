package devstack

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

// holdEnqueue holds the nth enqueue until after the run's end, as when
// --duration runs out between a writer's commit and the end of its publish.
type holdEnqueue struct {
	n     int64
	count *atomic.Int64
	until time.Time
}

func (holdEnqueue) DialHook(next redis.DialHook) redis.DialHook { return next }
func (holdEnqueue) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h holdEnqueue) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		name := strings.ToLower(fmt.Sprint(args[0]))
		if (name == "evalsha" || name == "eval") && len(args) > 3 && strings.Contains(fmt.Sprint(args[3]), ":t:") {
			if h.count.Add(1) == h.n {
				// --duration runs out while this publish is on the wire;
				// meanwhile readers keep the old version cached.
				time.Sleep(time.Until(h.until))
			}
		}
		return next(ctx, cmd)
	}
}

// A write committed just before the run ends still publishes its
// invalidation to the end, so the final check does not blame the cache for
// an invalidation the workload never sent.
func TestEndOfRunCommitStillPublishes(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	policy, err := keyspec.Load("../../../../examples/policy.yaml")
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	m, err := worker.NewMetrics(reg)
	require.NoError(t, err)
	w, err := worker.New(worker.Config{Queue: db.Client, Policy: policy, Metrics: m, Logger: quiet(), PollInterval: time.Millisecond})
	require.NoError(t, err)
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { stop(); <-done }()

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond) // --duration 1.5s
	defer cancel()
	deadline, _ := ctx.Deadline()
	q := redis.NewClient(db.Client.Options())
	defer q.Close()
	q.AddHook(holdEnqueue{n: 4, count: new(atomic.Int64), until: deadline.Add(200 * time.Millisecond)})

	sum, err := RunWorkload(ctx, Config{Queue: q, Cache: db.Client, Policy: policy, Gatherer: reg, Registerer: reg,
		Rows: DefaultRows[2:3], Entities: 1, Writers: 1, WriteRate: 20, LagBound: time.Minute, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	require.NoError(t, err)
	t.Logf("summary %+v", sum)
	require.Zero(t, sum.WriteErrors, "the publish held past the end must still go through")
	require.True(t, sum.Drained)
	require.Zero(t, sum.StaleCached, "false positive: the final check blames the cache for a write whose invalidation the workload itself never published")
}
