package enqueue_test

import (
	"context"
	"testing"
	"time"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
)

// BenchmarkDeleteKeys measures one-key DeleteKeys calls against a private
// redis-server on loopback: one caller at a time (the call's latency), and
// many concurrent callers without and with coalescing (keys/s). producers is
// per GOMAXPROCS: 16 makes 32 request handlers on a 2-core machine. With
// group commit, the calls that arrive during one enqueue round trip share the
// next task, so the rate is about (calls per round trip) / round trip.
func BenchmarkDeleteKeys(b *testing.B) {
	// A lone caller never waits for a window, but the coalescing path
	// hands its call to a flush goroutine; serial shows what that costs.
	for _, tc := range []struct {
		name string
		cfg  enqueue.Config
	}{
		{"coalesce=off/serial", enqueue.Config{NoCoalesce: true}},
		{"coalesce=default/serial", enqueue.Config{}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := benchClient(b, tc.cfg)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.DeleteKeys(ctx, "user:{42}:profile"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "keys/s")
		})
	}
	for _, tc := range []struct {
		name      string
		producers int
		cfg       enqueue.Config
	}{
		{"coalesce=off/producers=16", 16, enqueue.Config{NoCoalesce: true}},
		{"coalesce=1ms/producers=16", 16, enqueue.Config{Coalesce: &enqueue.CoalesceConfig{Window: time.Millisecond}}},
		{"coalesce=2ms/producers=16", 16, enqueue.Config{Coalesce: &enqueue.CoalesceConfig{Window: 2 * time.Millisecond}}},
		{"coalesce=1ms/producers=256", 256, enqueue.Config{Coalesce: &enqueue.CoalesceConfig{Window: time.Millisecond}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := benchClient(b, tc.cfg)
			ctx := context.Background()
			b.SetParallelism(tc.producers)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.DeleteKeys(ctx, "user:{42}:profile"); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "keys/s")
			if err := c.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func benchClient(b *testing.B, cfg enqueue.Config) *enqueue.Client {
	b.Helper()
	c, err := enqueue.New(redistest.Client(b), cfg)
	if err != nil {
		b.Fatal(err)
	}
	return c
}
