package cacheaside

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/keyspec"
)

// Loader reads the value of a key from the source of truth (the database).
// It returns ErrNotFound (which it may wrap) when the thing does not exist.
// Its ctx ends at Config.LoadTimeout, not when the caller gives up: other
// callers may be waiting for the same load.
type Loader func(ctx context.Context) ([]byte, error)

// Cache reads through Redis with leases. It is safe for concurrent use;
// make one per cache Redis and share it.
type Cache struct {
	cfg     Config
	rdb     redis.UniversalClient
	log     *slog.Logger
	m       *Metrics
	flights flights // merges identical concurrent reads in this process

	// onFlight, when set (by tests, before the first read), is called each
	// time a read has started or joined its flight.
	onFlight func()
}

// New validates cfg and returns a Cache.
func New(cfg Config) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Cache{cfg: cfg, rdb: cfg.Redis, log: cfg.Logger, m: cfg.Metrics}, nil
}

// Get returns the value of key: from Redis on a hit, else from load, whose
// result it stores with the TTL of Config.TTL (or Config.Class) only if no
// invalidation deleted the key while load ran. Concurrent misses of the same
// key share one load: within this process through one flight, across
// processes through the lease, which its holder renews while it loads. A
// read that waits Config.MaxWait for another reader's load fails with
// ErrWaitTimeout (it loads nothing). A loader's ErrNotFound comes back
// wrapped (errors.Is(err, ErrNotFound)). Other loader errors come back
// wrapped, with ErrLoadFailed; the failure (its kind, never its text) then
// stands on the key for Config.FailureTTL, and the reads that wait for the
// load or arrive meanwhile fail with ErrLoadFailed instead of loading.
func (c *Cache) Get(ctx context.Context, key string, load Loader) ([]byte, error) {
	look := func(ctx context.Context, marker string) (lookupResult, error) {
		return c.readOrLease(ctx, key, marker)
	}
	ttl := func() time.Duration { return jitteredTTL(c.cfg.TTL, c.cfg.Jitter, c.cfg.Rand) }
	return c.get(ctx, "k"+key, key, look, ttl, load)
}

// GetFamily is Get for a key of a delete-strategy family: the key is
// rendered from params (keyspec.Family.Key) and its TTL comes from the
// family (its own, else its class's) with the family's jitter. A version
// family is refused: read it with GetVersioned.
func (c *Cache) GetFamily(ctx context.Context, fam *keyspec.Family, params map[string]string, load Loader) ([]byte, error) {
	if fam.Strategy == keyspec.StrategyVersion {
		return nil, fmt.Errorf("cacheaside: get family %q: %w: read it with GetVersioned", fam.Name, keyspec.ErrVersioned)
	}
	key, err := fam.Key(params)
	if err != nil {
		return nil, fmt.Errorf("cacheaside: %w", err)
	}
	look := func(ctx context.Context, marker string) (lookupResult, error) {
		return c.readOrLease(ctx, key, marker)
	}
	ttl := func() time.Duration { return fam.JitteredTTL(c.cfg.Rand) }
	return c.get(ctx, "k"+key, key, look, ttl, load)
}

// readOrLease runs readOrLeaseScript on a raw key.
func (c *Cache) readOrLease(ctx context.Context, key, marker string) (lookupResult, error) {
	s, err := readOrLeaseScript.Run(ctx, c.rdb, []string{key}, marker, px(c.cfg.LeaseTTL)).Text()
	switch {
	case errors.Is(err, redis.Nil):
		return lookupResult{dataKey: key, leased: true}, nil
	case err != nil:
		return lookupResult{}, fmt.Errorf("read key %q: %w", key, err)
	}
	return lookupResult{dataKey: key, value: []byte(s)}, nil
}

// get merges identical concurrent reads into one flight (flight names the
// read: "k" + key or "v" + version key, so the two kinds never merge) and
// counts hits and misses per caller. what names the read in errors.
//
// The read that starts a flight waits for it: LoadTimeout bounds its load
// and MaxWait its wait for another's lease. A read that joins a flight
// waits as a waiter for another process's lease would: at most MaxWait
// (from its first join), and it leaves to read again if the flight's lease
// goes mid-load, as a waiter would find the key free.
func (c *Cache) get(ctx context.Context, name, what string, look lookup, ttl func() time.Duration, load Loader) ([]byte, error) {
	var waitUntil time.Time // MaxWait after this read first joined another's flight
	for attempt := 0; ; attempt++ {
		joined := time.Now() // a request sent after this sees every invalidation that returned before
		f, lead := c.flights.join(name)
		if lead {
			// The flight outlives this caller if it gives up: others may
			// have joined. MaxWait bounds its wait, LoadTimeout its load.
			fctx := context.WithoutCancel(ctx)
			go c.flights.run(name, f, func() (outcome, error) {
				return c.fill(fctx, look, ttl, load, func() { c.flights.leave(name, f) })
			})
		}
		if c.onFlight != nil {
			c.onFlight()
		}
		var timeout <-chan time.Time
		var gone <-chan struct{}
		if !lead {
			if waitUntil.IsZero() {
				waitUntil = joined.Add(c.cfg.MaxWait)
			}
			t := time.NewTimer(time.Until(waitUntil))
			defer t.Stop() // at most two: one per attempt
			timeout = t.C
			if attempt == 0 {
				gone = f.gone // a second attempt takes what its flight gives
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cacheaside: get %q: %w", what, ctx.Err())
		case <-timeout:
			c.m.waitTimeouts.Inc()
			return nil, fmt.Errorf("cacheaside: get %q: wait for another read's load in this process: %w (%s); the load is still running", what, ErrWaitTimeout, c.cfg.MaxWait)
		case <-gone:
			continue // the flight's lease went: its value will not do
		case <-f.done:
		}
		if f.err != nil {
			return nil, fmt.Errorf("cacheaside: get %q: %w", what, f.err)
		}
		o := f.out
		// A caller that joined a flight must not take a value that may
		// predate a write whose invalidation returned before this caller
		// began: one loaded under a lease an invalidation deleted
		// (untrusted), or one whose final read or store was sent before
		// this caller joined, which an invalidation may have followed
		// while its answer was on the way. It reads again, once: the retry
		// starts after the flight it joined has ended (or left the map),
		// so its own lookup is sent after this caller began.
		if !lead && attempt == 0 && (!o.trusted || !joined.Before(o.sent)) {
			continue
		}
		if o.hit {
			c.m.hits.Inc()
		} else {
			c.m.misses.Inc()
		}
		if o.notFound {
			return nil, fmt.Errorf("cacheaside: get %q: %w", what, ErrNotFound)
		}
		if f.shared() {
			return bytes.Clone(o.value), nil // each caller may change its own
		}
		return o.value, nil
	}
}

// jitteredTTL spreads ttl by the fraction j, as keyspec does for families.
func jitteredTTL(ttl time.Duration, j float64, r keyspec.Rand) time.Duration {
	c := keyspec.Class{TTL: ttl, Jitter: j}
	return c.JitteredTTL(r)
}
