package worker

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// BenchmarkBatcher deletes existing keys from DefaultConcurrency goroutines,
// each submit standing for one DeleteKeys task of 1 or 100 keys, through
// the micro-batcher and through the per-task path it replaced (one pipeline
// of UNLINKs per task), and reports keys/s. An op is one submit.
//
//	go test -run='^$' -bench=Batcher -benchmem ./worker/
func BenchmarkBatcher(b *testing.B) {
	rdb := redistest.Client(b)
	paths := []struct {
		name  string
		apply func(ctx context.Context, bt *batcher, keys []string) error
	}{
		{"batcher", func(ctx context.Context, bt *batcher, keys []string) error { return bt.unlink(ctx, keys) }},
		{"per-task", func(ctx context.Context, _ *batcher, keys []string) error {
			_, err := unlink(ctx, rdb, keys, DefaultDeleteChunk)
			return err
		}},
	}
	for _, perTask := range []int{1, 100} {
		for _, path := range paths {
			b.Run(fmt.Sprintf("keys=%d/%s", perTask, path.name), func(b *testing.B) {
				ctx := context.Background()
				require.NoError(b, rdb.FlushDB(ctx).Err())
				keys := benchKeys(b, rdb, b.N*perTask)
				bt := newBatcher(rdb, DefaultBatchMaxKeys, DefaultDeleteChunk, DefaultBatchInFlight)
				var (
					next     atomic.Int64
					mu       sync.Mutex
					firstErr error
				)
				b.SetParallelism(max(1, DefaultConcurrency/runtime.GOMAXPROCS(0)))
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := int(next.Add(1) - 1)
						if err := path.apply(ctx, bt, keys[i*perTask:(i+1)*perTask]); err != nil {
							mu.Lock()
							firstErr = err
							mu.Unlock()
						}
					}
				})
				b.StopTimer()
				require.NoError(b, firstErr)
				b.ReportMetric(float64(b.N*perTask)/b.Elapsed().Seconds(), "keys/s")
				left, err := rdb.DBSize(ctx).Result()
				require.NoError(b, err)
				require.Zero(b, left, "keys survived the benchmark")
			})
		}
	}
}

// benchKeys sets n keys and returns them.
func benchKeys(b *testing.B, rdb redis.UniversalClient, n int) []string {
	b.Helper()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench:%d", i)
	}
	for lo := 0; lo < n; lo += 100_000 {
		SetKeys(b, rdb, keys[lo:min(lo+100_000, n)]...)
	}
	return keys
}
