// Package sim holds what the CLI's simulations share: `invalidator dev`
// (package devstack), `check-freshness` (package freshness) and `bench`
// (package bench) each run writers against a versioned source of truth, a
// worker, and readers or watchers whose lags they summarise. One
// definition of each lets their figures mean the same thing.
//
//   - Memory is a versioned source of truth in memory: a row is at the
//     version of its last write.
//   - History records when each version of each row was complete (its
//     write returned) and judges reads against it: Staleness and Stale are
//     the one definition of a stale read.
//   - Histogram and Percentiles are the quantiles: nearest rank, over
//     logarithmic buckets or over every sample.
//   - StartWorker runs a worker, and Go a relay, until stopped.
//
// A stale read. Version v of a row is complete at the moment the write
// that made it returned. A read that started at time s and returned
// version r was superseded by every complete version above r; its
// staleness is s − (the earliest completion time of a version above r), or
// 0 when no version above r was complete by s. The read is stale when its
// staleness is at least the lag bound: it returned a value older than a
// write that had completed the lag bound or more before the read started,
// so the invalidation had that long to land, yet old data was served.
// Reads with a smaller staleness are within the promise of asynchronous
// invalidation (superseded, not stale).
//
//	h := sim.NewHistory(0)
//	v, _ := src.Write(ctx, "user:1")
//	h.Complete("user:1", v, time.Now())
//	// a read that began at began and got version got:
//	if h.Stale("user:1", began, got, time.Second) { ... }
package sim
