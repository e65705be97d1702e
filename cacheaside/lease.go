package cacheaside

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
)

// readOrLeaseScript is the first step of every raw-key read: a hit, or a
// lease on the miss, in one round trip.
var readOrLeaseScript = redis.NewScript(`
-- KEYS[1] -> cache key
-- ARGV[1] -> this reader's lease marker ('l' + token)
-- ARGV[2] -> lease duration in milliseconds
-- Output: the key's string when it has one (a value, a negative entry or
--         another reader's lease marker); nil when the key was missing and
--         now holds ARGV[1] for ARGV[2] ms, i.e. this reader holds the lease
local v = redis.call('GET', KEYS[1])
if v then
  return v
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
`)

// storeScript is the compare-and-set that makes stale stores impossible: an
// invalidation UNLINKs the key, marker and all, so a reader that loaded
// before the write finds its marker gone and stores nothing.
var storeScript = redis.NewScript(`
-- KEYS[1] -> cache key (or a versioned family's data key)
-- ARGV[1] -> this reader's lease marker
-- ARGV[2] -> the encoded entry to store ('v' + value, or 'n')
-- ARGV[3] -> TTL in milliseconds; "0" for no expiry
-- Output: 1 if stored; 0 if the key no longer holds ARGV[1] (an
--         invalidation deleted it, or the lease expired and maybe another
--         reader took it), and then the key is left as it is
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[3])
if ttl and ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
`)

// versionedStoreScript is storeScript for a version family's data key. A
// bump leaves the leased data key alone, so the value is stored either way
// (after a bump, on the orphaned key, where no reader of the new version
// looks), but the script reports whether the version moved on: then the
// load may predate the bump's write, and readers who joined it after the
// bump must load again rather than take it.
var versionedStoreScript = redis.NewScript(`
-- KEYS[1] -> data key at the version read (it shares KEYS[2]'s hash tag)
-- KEYS[2] -> the family instance's version key
-- ARGV[1] -> this reader's lease marker
-- ARGV[2] -> the encoded entry to store ('v' + value, or 'n')
-- ARGV[3] -> TTL in milliseconds; "0" for no expiry
-- ARGV[4] -> the version the lease was taken under
-- Output: 0 if the key no longer holds ARGV[1] (nothing stored); 1 if
--         stored and the version is still ARGV[4]; 2 if stored but the
--         version has moved on (the key is orphaned)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[3])
if ttl and ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[2])
end
if redis.call('GET', KEYS[2]) ~= ARGV[4] then
  return 2
end
return 1
`)

// renewScript extends a lease while its holder's loader runs, so a load
// that outlasts LeaseTTL keeps its lease and the waiters keep waiting. It
// compares the marker and then only moves the expiry, never the value: a
// lease that an invalidation deleted stays deleted, and the holder's store
// is then refused.
var renewScript = redis.NewScript(`
-- KEYS[1] -> cache key (or a versioned family's data key)
-- ARGV[1] -> this reader's lease marker
-- ARGV[2] -> lease duration in milliseconds
-- Output: 1 if the key held ARGV[1] and now expires ARGV[2] ms from now; 0
--         if it held anything else or nothing (invalidated, expired, taken
--         by another reader), and then it is left as it is
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// failScript replaces a lease with a failure marker after a failed load,
// so the readers waiting for it, and those that arrive while it stands,
// fail at once rather than each load again (see Config.FailureTTL). Like the
// store, it is a compare-and-set: a lease an invalidation deleted (or that
// lapsed and another reader took) is left as it is, so a failure never
// outlives an invalidation nor covers another reader's lease.
var failScript = redis.NewScript(`
-- KEYS[1] -> cache key (or a versioned family's data key)
-- ARGV[1] -> this reader's lease marker
-- ARGV[2] -> the failure marker ('f' + the kind of error)
-- ARGV[3] -> how long the failure marker stands, in milliseconds
-- Output: 1 if the key held ARGV[1] and now holds ARGV[2] for ARGV[3] ms;
--         0 if it held anything else or nothing, which is left alone
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
`)

// releaseScript gives a lease back after a load that found nothing (with
// NegativeTTL off) or failed (with FailureTTL off), so waiting readers try
// at once instead of after the lease TTL.
var releaseScript = redis.NewScript(`
-- KEYS[1] -> cache key (or a versioned family's data key)
-- ARGV[1] -> this reader's lease marker
-- Output: 1 if the key held ARGV[1] and was deleted; 0 if it held anything
--         else, which is left alone
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`)

// releaseTimeout bounds the lease release, or its replacement by a failure
// marker, on the way out of a load that stored nothing.
const releaseTimeout = 2 * time.Second

// lookup is the first step of a read: what the data key holds, or a lease
// on it (see readOrLeaseScript and versionedReadScript).
type lookup func(ctx context.Context, marker string) (lookupResult, error)

type lookupResult struct {
	dataKey string // the key the value lives at
	value   []byte // the stored string; nil when leased
	leased  bool   // the key was empty and now holds this reader's marker
	// versionKey and version are set for a version family: the store must
	// also find the version unchanged, since a bump does not touch the
	// leased data key.
	versionKey, version string
}

// outcome is the result of one fill, shared by the callers merged into it.
type outcome struct {
	value    []byte
	notFound bool
	// hit: the answer came from Redis.
	hit bool
	// trusted: the value was read from Redis or stored under a lease that
	// held to the end, so no invalidation ran during the load. An untrusted
	// value may predate a write that committed while it loaded: the caller
	// that started the load may use it (the write came after its read
	// began), callers that joined later retry.
	trusted bool
	// sent is when the request that settled the value (the lookup that
	// found it, or the store) was sent. Only callers that joined before it
	// may take the value: an invalidation that returned before a caller
	// began, after sent, is one the value may predate.
	sent time.Time
}

// fill answers one read: a hit; or a lease, a load and a store; or, when
// another reader holds the lease, a wait for its value. The wait lasts as
// long as the lease does, since its holder renews it while it loads (see
// keepLease), up to MaxWait, and then fails with ErrWaitTimeout rather than
// load too: a load that outlasts MaxWait means a slow database, and a herd
// of loads is what it can least afford. A lease that goes away
// (invalidated, given back, or lapsed because its holder died) is taken by
// the next re-read, here or in another process; the other waiters wait for
// the new holder. A lease replaced by a failure marker (the holder's load
// failed) fails the wait with ErrLoadFailed, as it fails the reads that find
// the marker while it stands. ctx has no deadline of its own: MaxWait bounds
// the wait, LoadTimeout the load. lost is called if this read's own lease
// goes while its loader runs.
func (c *Cache) fill(ctx context.Context, look lookup, ttl func() time.Duration, load Loader, lost func()) (outcome, error) {
	marker := newLeaseMarker()
	var waitStart time.Time
	backoff := c.cfg.WaitBackoff
	for {
		asked := time.Now() // a lease taken by this read lasts LeaseTTL from a moment after it
		r, err := look(ctx, marker)
		var e entry
		if err == nil && !r.leased {
			if e, err = decode(r.value); err != nil {
				err = fmt.Errorf("read key %q: %w", r.dataKey, err)
			}
		}
		if waiting := err == nil && !r.leased && e.kind == kindLease; !waiting {
			if !waitStart.IsZero() {
				c.m.leaseWaitDuration.Observe(time.Since(waitStart).Seconds())
				if r.leased {
					c.m.leaseTakeovers.Inc()
				}
			}
			switch {
			case err != nil:
				return outcome{}, err
			case r.leased:
				return c.loadAndStore(ctx, r, marker, asked, ttl, load, lost)
			case e.kind == kindFailure:
				c.m.failureMarkerReads.Inc()
				return outcome{}, fmt.Errorf("read key %q: %w in another read a moment ago (%s); reads fail so until its failure marker expires (FailureTTL) or the key is invalidated", r.dataKey, ErrLoadFailed, e.payload)
			case e.kind == kindNotFound:
				return outcome{notFound: true, hit: true, trusted: true, sent: asked}, nil
			default:
				return outcome{value: e.payload, hit: true, trusted: true, sent: asked}, nil
			}
		}
		// Another reader is loading: wait for its value rather than load too.
		if waitStart.IsZero() {
			waitStart = time.Now()
			c.m.leaseWaits.Inc()
		}
		left := c.cfg.MaxWait - time.Since(waitStart)
		if left <= 0 {
			c.m.leaseWaitDuration.Observe(time.Since(waitStart).Seconds())
			c.m.waitTimeouts.Inc()
			return outcome{}, fmt.Errorf("wait for the lease on key %q: %w (%s); the lease is still held", r.dataKey, ErrWaitTimeout, c.cfg.MaxWait)
		}
		// Full jitter in [backoff/2, backoff) keeps waiters of many
		// processes from re-reading in lockstep.
		pause := min(backoff/2+rand.N(backoff/2+1), left)
		if err := sleep(ctx, pause); err != nil {
			return outcome{}, fmt.Errorf("wait for the lease on key %q: %w", r.dataKey, err)
		}
		backoff = min(2*backoff, c.cfg.WaitBackoffMax)
	}
}

// loadAndStore runs the loader under this reader's lease (taken by a read
// sent at asked), renewing the lease while it runs (and calling lost if it
// goes), and stores the result only if the lease still stands.
func (c *Cache) loadAndStore(ctx context.Context, r lookupResult, marker string, asked time.Time, ttl func() time.Duration, load Loader, lost func()) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.LoadTimeout)
	defer cancel()
	key := r.dataKey
	stopRenewing := c.keepLease(ctx, key, marker, asked, lost)
	v, err := c.runLoader(ctx, key, load)
	stopRenewing()
	var enc string
	var d time.Duration
	switch {
	case errors.Is(err, ErrNotFound):
		if c.cfg.NegativeTTL <= 0 {
			c.release(ctx, key, marker)
			return outcome{notFound: true}, nil
		}
		enc, d = encodedNotFound, c.cfg.NegativeTTL
	case err != nil:
		c.fail(ctx, key, marker, err)
		return outcome{}, fmt.Errorf("load key %q: %w: %w", key, ErrLoadFailed, err)
	default:
		enc, d = string(encodeValue(v)), ttl()
	}
	o := outcome{value: v, notFound: err != nil, sent: time.Now()}
	var stored int
	var serr error
	if r.versionKey != "" {
		stored, serr = versionedStoreScript.Run(ctx, c.rdb, []string{key, r.versionKey}, marker, enc, px(d), r.version).Int()
	} else {
		stored, serr = storeScript.Run(ctx, c.rdb, []string{key}, marker, enc, px(d)).Int()
	}
	switch {
	case serr != nil:
		// The load succeeded; a failed store costs a later miss, not this
		// read. The lease expires by itself.
		c.log.Warn("cacheaside: store failed; the value is served but not cached", "key", key, "err", serr)
	case stored == 0:
		c.m.staleStoresPrevented.Inc()
		c.log.Debug("cacheaside: store refused: the lease is gone (invalidated or expired during the load)", "key", key)
	case stored == 2:
		// Stored on a key the bump orphaned; the value may predate it.
		c.log.Debug("cacheaside: version bumped during the load; the value went to the orphaned key", "key", key)
	default:
		o.trusted = true
	}
	return o, nil
}

// keepLease renews this reader's lease on key, taken by a read sent at
// asked, every LeaseTTL/3 (counted from asked, since Redis counts the lease
// from a moment after it) until the returned stop is called (the loader has
// returned), ctx ends (LoadTimeout), or the lease is gone. A gone lease
// stays gone: an invalidation deleted it, or it lapsed and another reader
// may hold the key now; either way the store will be refused, and lost is
// called so that reads joined to this load read again instead of waiting
// for it. A failed renewal is retried at the next tick, so the lease
// outlives one failure.
func (c *Cache) keepLease(ctx context.Context, key, marker string, asked time.Time, lost func()) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	every := max(c.cfg.LeaseTTL/3, time.Millisecond)
	go func() {
		defer close(done)
		next := asked.Add(every)
		t := time.NewTimer(time.Until(next))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			sent := time.Now()
			// A renewal that cannot land before the lease lapses is moot.
			rctx, rcancel := context.WithTimeout(ctx, c.cfg.LeaseTTL)
			held, err := renewScript.Run(rctx, c.rdb, []string{key}, marker, px(c.cfg.LeaseTTL)).Int()
			rcancel()
			switch {
			case ctx.Err() != nil:
				return // stopped while renewing; the result does not matter
			case err != nil:
				c.m.leaseRenewalErrors.Inc()
				c.log.Warn("cacheaside: lease renewal failed; the lease lapses unless a later renewal succeeds", "key", key, "err", err)
			case held == 0:
				c.log.Debug("cacheaside: lease gone during the load (invalidated or expired); renewal stops", "key", key)
				lost()
				return
			default:
				c.m.leaseRenewals.Inc()
			}
			next = sent.Add(every)
			t.Reset(time.Until(next))
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// runLoader calls the loader and counts it. A loader that has not returned
// when ctx ends (LoadTimeout) is abandoned, so that it cannot hold the key:
// the load fails, and what the loader returns later is dropped.
func (c *Cache) runLoader(ctx context.Context, key string, load Loader) ([]byte, error) {
	type result struct {
		v   []byte
		err error
	}
	start := time.Now()
	done := make(chan result, 1) // buffered: an abandoned loader's send never blocks
	go func() {
		v, err := load(ctx)
		done <- result{v, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		select {
		case r = <-done: // it returned just in time
		default:
			c.m.loadTimeouts.Inc()
			c.log.Warn("cacheaside: the loader did not return within LoadTimeout; the load is abandoned and fails", "key", key, "timeout", c.cfg.LoadTimeout)
			r.err = fmt.Errorf("the loader did not return within LoadTimeout (%s): %w", c.cfg.LoadTimeout, ctx.Err())
		}
	}
	v, err := r.v, r.err
	c.m.loadDuration.Observe(time.Since(start).Seconds())
	c.m.loads.Inc()
	if err != nil && !errors.Is(err, ErrNotFound) {
		c.m.loaderErrors.Inc()
	}
	return v, err
}

// release gives the lease back, best effort: if it fails, the lease expires.
func (c *Cache) release(ctx context.Context, key, marker string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := releaseScript.Run(ctx, c.rdb, []string{key}, marker).Err(); err != nil {
		c.log.Warn("cacheaside: release lease failed; readers wait until it expires", "key", key, "err", err)
	}
}

// fail replaces the lease with a failure marker for FailureTTL after a
// failed load, or gives it back when FailureTTL is negative. Best effort: if
// it fails, the lease expires.
func (c *Cache) fail(ctx context.Context, key, marker string, err error) {
	if c.cfg.FailureTTL < 0 {
		c.release(ctx, key, marker)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	set, serr := failScript.Run(ctx, c.rdb, []string{key}, marker, encodeFailure(err), px(c.cfg.FailureTTL)).Int()
	switch {
	case serr != nil:
		c.log.Warn("cacheaside: failure marker not set; readers wait until the lease expires", "key", key, "err", serr)
	case set == 1:
		c.m.failureMarkers.Inc()
	default:
		c.log.Debug("cacheaside: no failure marker: the lease is gone (invalidated or expired during the load)", "key", key)
	}
}

// px converts a TTL to the milliseconds of SET PX, where 0 means no
// expiry: a positive TTL under 1ms must not become "forever".
func px(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return max(d.Milliseconds(), 1)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
