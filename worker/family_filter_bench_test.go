package worker

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// BenchmarkFamilyFilter measures what the declarations' filter costs a
// family delete: 10,000 family keys among 100,000, deleted by a plain SCAN
// MATCH + UNLINK loop (the limit), by the worker's family delete with the
// family's parameter undeclared (no filter), and with it declared (every
// key SCAN returns goes through the matcher). The three run in turn in each
// iteration (starting with a different one each time), on the same layout,
// so a busy machine slows them alike; compare the ratios it reports.
//
//	go test -run='^$' -bench=FamilyFilter -benchtime=15x ./worker/
func BenchmarkFamilyFilter(b *testing.B) {
	const keyspace, familySize = 100000, 10000
	rdb := redistest.Client(b)
	ctx := context.Background()
	policy := func(decl string) *keyspec.Policy {
		p, err := keyspec.Parse("p.yaml", []byte(`
version: 1
classes:
  standard: {ttl: 1m}
families:
  item:
    template: "item:{shop}:{id}"
    class: standard`+decl+`
`))
		require.NoError(b, err)
		return p
	}
	fill := func() {
		pipe := rdb.Pipeline()
		for i := range keyspace {
			k := fmt.Sprintf("other:%d", i)
			if i%(keyspace/familySize) == 0 {
				k = fmt.Sprintf("item:s1:%d", i)
			}
			pipe.Set(ctx, k, "v", 0)
			if pipe.Len() == 1000 {
				_, err := pipe.Exec(ctx)
				require.NoError(b, err)
			}
		}
		_, err := pipe.Exec(ctx)
		require.NoError(b, err)
	}
	worker := func(p *keyspec.Policy) func() int64 {
		w, err := New(Config{Queue: rdb, Policy: p, Logger: quiet()})
		require.NoError(b, err)
		n := 0
		return func() int64 {
			n++
			id := fmt.Sprintf("bench-%d", n)
			err := w.applyDeleteFamily(ctx, w.state.Load(), familyTask("s1"), asynq.NewTask(tasks.KindDeleteFamily, nil), id, w.log)
			require.NoError(b, err)
			pr, err := FamilyDeleteProgress(ctx, rdb, id)
			require.NoError(b, err)
			return pr.Deleted
		}
	}
	raw := func() int64 {
		var cur uint64
		var n int64
		for {
			keys, next, err := rdb.Scan(ctx, cur, "item:s1:*", DefaultScanCount).Result()
			require.NoError(b, err)
			if len(keys) > 0 {
				d, err := unlink(ctx, rdb, keys, DefaultDeleteChunk)
				require.NoError(b, err)
				n += d
			}
			if cur = next; cur == 0 {
				return n
			}
		}
	}
	variants := []struct {
		name string
		run  func() int64
	}{
		{"raw_scan_unlink", raw},
		{"undeclared", worker(policy(""))},
		{"declared", worker(policy("\n    params: {id: {match: '[0-9]+'}}"))},
	}
	took := make([]time.Duration, len(variants))
	cpu := make([]time.Duration, len(variants)) // this process's: the worker's, not Redis's
	b.ResetTimer()
	for it := range b.N {
		for j := range variants {
			// Each iteration starts with the next variant, so none always
			// runs right after the fill of another.
			i := (it + j) % len(variants)
			v := variants[i]
			b.StopTimer()
			require.NoError(b, rdb.FlushDB(ctx).Err())
			fill()
			b.StartTimer()
			start, cpu0 := time.Now(), processCPU(b)
			n := v.run()
			took[i] += time.Since(start)
			cpu[i] += processCPU(b) - cpu0
			require.Equal(b, int64(familySize), n, v.name)
		}
	}
	rate := func(i int) float64 { return float64(familySize*b.N) / took[i].Seconds() }
	for i, v := range variants {
		b.ReportMetric(rate(i), v.name+"_keys/s")
		b.ReportMetric(float64(cpu[i].Nanoseconds())/float64(familySize*b.N), v.name+"_cpu_ns/key")
	}
	b.ReportMetric(rate(2)/rate(1), "declared/undeclared")
	b.ReportMetric(rate(2)/rate(0), "declared/raw")
	b.ReportMetric(rate(1)/rate(0), "undeclared/raw")
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
