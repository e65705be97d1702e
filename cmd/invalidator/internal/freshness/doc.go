// Package freshness is the stale-read checker behind `invalidator
// check-freshness`: it runs writers, a real worker and two kinds of readers
// side by side against one Redis, forces the race that plain cache-aside
// loses, and counts the reads that served stale data.
//
// Setup. A source of truth holds versioned rows (in memory; see Source).
// Writers advance a row's version and then enqueue the invalidation of that
// row's keys through package enqueue. With a Postgres source the
// invalidation goes through the transactional outbox instead (package
// outbox): written in the write's own transaction, with a marker key that
// names the write, and moved to the queue by a relay the run starts. A real worker (package worker) applies
// the invalidations, slowed by Config.WorkerDelay per task. Two kinds of
// readers read the same rows, each through keys of its own:
//
//   - cacheaside: cacheaside.Cache, with leases, in Config.Processes
//     instances that stand for processes;
//   - control: plain cache-aside, GET, then on a miss load and SET.
//
// Every loader sleeps Config.LoaderDelay after it has read the row, which
// opens the window of the race: the reader has the old row, the write
// commits, its invalidation is applied, and then the reader stores. Besides
// the random workload, Config.ForcedRaces races are driven step by step
// (load, write, invalidation applied, store, read after the lag bound), so a
// control that can go stale does go stale, in every run.
//
// Definitions. A read is stale as package sim defines it, the one
// definition `invalidator dev` uses too: version v of a row is complete
// when the write that made it returned; a read that started at s and
// returned version r has a staleness of s − (the earliest completion of a
// version above r), and is stale when that is at least Config.LagBound.
// Reads with a staleness under the bound are within the promise of
// asynchronous invalidation and are only counted as superseded. Staleness
// percentiles are over superseded reads (staleness > 0).
//
// Load on the source. After the random workload, Config.HotKeyReaders
// readers of each kind read one missing hot key at once, spread over the
// processes, and the loader calls on that row are counted: the herd.
//
// Usage:
//
//	rep, err := freshness.Run(ctx, freshness.Config{Queue: rdb, Duration: 30 * time.Second})
//	rep.Print(os.Stdout)
//	// rep.CacheAside.StaleReads == 0; rep.Control.StaleReads > 0
package freshness
