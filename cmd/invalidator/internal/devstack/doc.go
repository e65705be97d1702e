// Package devstack is what `invalidator dev` runs for a newcomer: an
// embedded Redis when none is given, and a simulated application on the
// policy's events that writes, publishes invalidations and reads through
// cacheaside, with a live status line and a stale-read count.
//
//	emb, err := devstack.StartEmbedded()
//	defer emb.Close()
//	rdb := emb.Client()
//	// run a worker.Worker on rdb, then:
//	sum, err := devstack.RunWorkload(ctx, devstack.Config{Queue: rdb, Cache: rdb, Policy: policy,
//		Gatherer: reg, Status: func(s devstack.Status) { fmt.Println(s) }})
//
// With Config.DB the rows live in PostgreSQL and each write publishes its
// event through the transactional outbox (package outbox) in the write's
// own transaction, relayed to the queue by a relay the run starts.
//
// With Config.AuditEvery the run audits its families (package audit) with
// the source as their audit.Source; Config.DropInvalidations makes the
// application skip some invalidations, a bug for the audit to find.
//
// A read counts as stale when it returned a version older than a write that
// had completed Config.LagBound or more before the read started: the
// invalidation had time to land, yet old data was served. That is package
// sim's definition, the one `check-freshness` uses too. With cacheaside's
// leases that count stays zero however the loads and deletes interleave.
package devstack
