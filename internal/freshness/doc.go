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
// Definitions. Version v of a row is complete at the moment the write that
// made it returned. A read that started at time s and returned version r
// was superseded by every complete version above r; its staleness is
// s − (the earliest completion time of a version above r), or 0 when no
// version above r was complete. A read is stale when its staleness is at
// least Config.LagBound: it returned a value older than a write that had
// completed more than the invalidation lag bound before the read started.
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
