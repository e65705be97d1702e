// Package audit compares a cache with its source of truth, per family, to
// find the invalidations that never happened: a write path that forgot to
// invalidate leaves an entry that no TTL-free mechanism will ever fix.
//
// An Auditor samples up to Config.Sample keys of a family with SCAN pages
// from a random cursor, on every master of a Redis Cluster, rate-limited
// (Config.Rate keys/s, Config.ScanCount per page) so a busy cache is not
// hurt. It keeps the keys the family's matcher accepts (the whole
// template, declared parameters), parses their parameters
// (keyspec.Family.ParseKey), reads each value in cacheaside's format (lease
// markers, failure markers and negative entries are not data and are
// skipped), and asks the family's Source for the same entity.
//
// A difference is not yet a bug: the write may have committed and its
// invalidation be on its way. The Auditor waits RecheckAfter (make it the
// family's lag budget) and reads both sides afresh. A key is Inconsistent
// only if the cache still holds the very same value and the source still
// differs from it; if either side changed, it is InFlight. A source error
// or timeout makes a key Unverifiable, never Consistent.
//
// A Report gives the counts and the nines, -log10(inconsistent/verifiable);
// with no inconsistency, the sample shows at least log10(verifiable) nines
// (NinesAtLeast). Report.Stale lists the confirmed stale keys, to heal by
// enqueueing a DeleteKeys through enqueue like any other invalidation.
//
// A version family is sampled through its version keys, one per entity,
// and compared at the data key of the current version, the only one a
// reader reaches: data under an older version never counts. Heal it by
// bumping the stale entities' versions (Report.StaleParams).
//
// SCAN visits at most Config.ScanBudget keys per family and run, so a
// family with few keys in a big cache costs a bounded, rate-limited scan;
// Report.Scanned and Report.Note say what it found.
//
//	a, err := audit.New(cacheRedis, audit.Config{Sample: 500, RecheckAfter: 10 * time.Second})
//	if err != nil { ... }
//	rep, err := a.Audit(ctx, audit.Check{
//		Family:  policy.Families["product"],
//		Source:  audit.SourceFunc(func(ctx context.Context, p map[string]string) ([]byte, bool, error) {
//			return loadProductJSON(ctx, db, p["id"]) // what the cache's loader returns
//		}),
//		Compare: audit.CompareJSON,
//	})
//	if rep.Inconsistent > 0 {
//		_, err = producer.DeleteKeys(ctx, rep.Stale...) // heal through the queue
//	}
package audit
