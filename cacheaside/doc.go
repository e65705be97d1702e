// Package cacheaside is the read path: get-or-load from Redis with leases,
// so a reader can never store a value older than the last write, and herd
// protection, so a hot key that expires costs the database one load, not
// one per process.
//
// Plain cache-aside has a race that neither TTLs nor deletes on write close:
// a reader misses and reads the old row; a writer commits and its
// invalidation deletes the key; the reader then stores the old row, which
// is served until the TTL ends. cacheaside closes it with a lease kept in
// the key itself (so it works on Redis Cluster with no second key):
//
//   - On a miss, one Lua script sets the key to this reader's lease marker
//     with SET PX (Config.LeaseTTL) in the same round trip as the read.
//   - The reader calls the loader, then stores with a Lua compare-and-set:
//     only if the key still holds its own marker. An invalidation UNLINKs
//     the key, marker and all, so a value loaded before the write is
//     returned to its caller but never stored.
//   - While its loader runs, the reader renews its lease every LeaseTTL/3
//     with another compare-and-set (PEXPIRE only if the key still holds its
//     marker, so a lease an invalidation deleted stays deleted). A slow load
//     keeps its lease however long it takes, up to Config.LoadTimeout, when
//     a loader that has not returned is abandoned and the load fails; a
//     reader that dies stops renewing, and its lease lapses within LeaseTTL.
//   - A reader that finds another reader's marker does not load: it re-reads,
//     with jittered backoff from 2ms doubling up to LeaseTTL/8, for as long
//     as the lease is held. When the lease goes (an invalidation deleted it,
//     the holder died), the next re-read anywhere takes a new lease and
//     loads, and the other waiters wait for that. So a hot key gets one load
//     at a time across the fleet, however slow the database; within a
//     process, one flight serves identical concurrent reads (singleflight).
//     A read that joins a flight takes its value only if the
//     flight's last request (the lookup that found the value, or the store)
//     was sent after the read began, and reads again otherwise: an
//     invalidation that returned before the read began may have followed
//     that request.
//   - A waiter gives up at Config.MaxWait (default: LoadTimeout) with
//     ErrWaitTimeout and loads nothing: the holder is alive and loading, so
//     the database is slow, and a load per waiting process is what it can
//     least afford. The caller's ctx ends its own wait sooner. A read that
//     joins a load in its own process waits the same way: at most MaxWait,
//     and it reads again when the holder finds its lease gone.
//   - A load that fails (the loader's error, or LoadTimeout) replaces its
//     own lease, by compare-and-set, with a failure marker that stands for
//     Config.FailureTTL (default 500ms). Its waiters, and the readers that
//     find it meanwhile, fail with ErrLoadFailed instead of loading: a
//     failing database costs one load per FailureTTL, not one per reader.
//     The marker tells the kind of error (the Go types in its chain, and
//     whether it was a timeout), never its text, which may hold secrets. It
//     is never a value: an invalidation deletes it like a lease, and after
//     it expires the next reader loads. A lease an invalidation deleted
//     mid-load gets no marker. ErrNotFound from a loader is no failure; it
//     is cached for Config.NegativeTTL when that is set.
//
// Version families (keyspec.StrategyVersion) are read with GetVersioned:
// one script reads the version key and the data key at that version, and a
// miss is leased and stored under the version read. A value loaded before a
// version bump so lands on the orphaned old key, and the next read loads
// afresh. TTLs come from the family, spread by its jitter. A missing
// version key (evicted, expired) is recreated exactly as the worker's bump
// restarts one, keyspec.VersionRestartMargin above Redis TIME, so it never
// lands on a version whose data is still cached.
//
// The read half and the write half together:
//
//	cache, err := cacheaside.New(cacheaside.Config{Redis: cacheRedis, Metrics: metrics})
//	prices := cacheaside.NewTyped(cache, cacheaside.JSON[Price]{})
//	fam, err := policy.Family("product_price")
//
//	// GET /price/{sku}
//	p, err := prices.GetFamily(ctx, fam, map[string]string{"sku": sku},
//		func(ctx context.Context) (Price, error) { return db.Price(ctx, sku) })
//
//	// PUT /price/{sku}: write, commit, then invalidate.
//	err = db.SetPrice(ctx, sku, p)
//	_, err = inv.DeleteFamily(ctx, "product_price", map[string]string{"sku": sku}) // enqueue.Client
//
// # Format on Redis
//
// Every string cacheaside writes starts with a tag byte, so a marker can
// never be mistaken for a value, whatever the value's bytes:
//
//	'v' + value   a loaded value, its bytes verbatim
//	'n'           a negative entry: the loader returned ErrNotFound
//	'l' + token   a lease marker; the token is 26 random base32 characters
//	'f' + text    a failure marker; the text (1-200 printable ASCII bytes)
//	              says what kind of error the load met
//
// A key holding anything else (a plain SET by other code) fails reads with
// ErrForeignValue and is left alone. Readers of the same keys must all use
// cacheaside. A version key holds the version in decimal, as the worker's
// bump writes it.
//
// # Metrics
//
// NewMetrics registers collectors on your own registry: hits, misses,
// loads, lease waits and their duration, wait timeouts, lease takeovers,
// lease renewals and renewal errors, stale stores prevented, loader errors,
// load timeouts, failure markers set and read, and load duration, named
// invalidator_cacheaside_*. Nothing is registered globally.
package cacheaside
