package worker_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/worker"
)

// BenchmarkLag measures the time from an enqueue returning to the key being
// gone, one invalidation at a time (the low-load case, where the poll
// interval dominates), and reports its p50 and p99.
//
//	go test -run='^$' -bench=Lag -benchtime=300x ./worker/
func BenchmarkLag(b *testing.B) {
	for _, poll := range []time.Duration{time.Millisecond, worker.DefaultPollInterval, 20 * time.Millisecond, 100 * time.Millisecond} {
		b.Run(fmt.Sprintf("poll=%s", poll), func(b *testing.B) {
			bundle := setup(b)
			bundle.startWorker(b, func(c *worker.Config) { c.PollInterval = poll })
			ctx := context.Background()
			lags := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				key := fmt.Sprintf("lag:%d", i)
				require.NoError(b, bundle.rdb.Set(ctx, key, 1, 0).Err())
				start := time.Now()
				_, err := bundle.client.DeleteKeys(ctx, key)
				require.NoError(b, err)
				for bundle.rdb.Exists(ctx, key).Val() == 1 {
					time.Sleep(50 * time.Microsecond)
				}
				lags = append(lags, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lags)
			ms := func(q float64) float64 { return float64(lags[int(q*float64(len(lags)-1))].Microseconds()) / 1000 }
			b.ReportMetric(ms(0.5), "p50_ms")
			b.ReportMetric(ms(0.99), "p99_ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
