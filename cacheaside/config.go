package cacheaside

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/keyspec"
)

// Defaults for Config fields left zero.
const (
	// DefaultLeaseTTL is how long a lease lasts unless its holder renews
	// it, which it does every LeaseTTL/3 while its loader runs. So a reader
	// that dies while loading blocks the key for at most this long, however
	// long loads take; and a holder keeps its lease through Redis stalls of
	// up to about 2/3 of it.
	DefaultLeaseTTL = 2 * time.Second
	// DefaultWaitBackoff is the first pause between re-reads while waiting.
	DefaultWaitBackoff = 2 * time.Millisecond
	// DefaultLoadTimeout bounds one load shared by merged callers.
	DefaultLoadTimeout = 30 * time.Second
	// maxDefaultFailureTTL caps the default FailureTTL: a failure stands
	// for long enough that a herd of waiters sees it, not for longer.
	maxDefaultFailureTTL = 500 * time.Millisecond
)

// Config configures a Cache. Zero values take the documented defaults.
type Config struct {
	// Redis is the cache Redis: standalone, Sentinel or Cluster. Required.
	Redis redis.UniversalClient

	// TTL of the entries Get stores; 0 means no expiry, as in keyspec, so
	// set it (or Class): it bounds staleness if an invalidation is ever
	// lost. GetFamily and GetVersioned use the family's TTL instead.
	// Default: 0.
	TTL time.Duration

	// Jitter spreads TTL by this fraction in [0, keyspec.MaxJitter], so
	// entries written together do not expire together. Default: 0.
	Jitter float64

	// Class, when set, gives Get the TTL and jitter of a freshness class,
	// e.g. policy.ClassOf(family) or the policy's default class; TTL and
	// Jitter must then be zero. Default: nil.
	Class *keyspec.Class

	// NegativeTTL, when positive, caches a loader's ErrNotFound for this
	// long. Invalidations remove negative entries like any other. Default: 0
	// (absence is not cached).
	NegativeTTL time.Duration

	// LeaseTTL is how long a reader's lease on a missing key lasts unless
	// renewed. The holder renews it every LeaseTTL/3 while its loader runs
	// (up to LoadTimeout), so a slow load keeps it; a holder that dies stops
	// renewing, and its lease lapses within LeaseTTL, when a waiting reader
	// takes it over. A lease that lapses mid-load anyway (renewals failed)
	// costs a second load, never a stale store. Default: 2s.
	LeaseTTL time.Duration

	// MaxWait bounds how long a reader that finds another's lease waits for
	// the value. It waits while the lease is held; if the lease goes (an
	// invalidation deleted it, the holder died), one waiter takes a new
	// lease and loads, and the others wait for it; if the holder's load
	// failed, the waiters fail with ErrLoadFailed (see FailureTTL).
	// At MaxWait with the lease still held, the read fails with
	// ErrWaitTimeout and loads nothing: the holder is alive and loading, so
	// the database is slow, and a load per waiting process would slow it
	// further. The caller's ctx bounds its own wait too. A read that joins
	// a load already running in its own process is bound the same way:
	// ErrWaitTimeout MaxWait after it joined, and if that load's lease goes
	// (an invalidation deleted it) it reads again at the holder's next
	// renewal rather than wait for a value that will not be stored. Set
	// MaxWait below your request deadline to get ErrWaitTimeout (and, say,
	// serve a fallback) instead of the ctx error. Default: LoadTimeout, so a
	// reader waits as long as a holder may load.
	MaxWait time.Duration

	// WaitBackoff is the first pause between re-reads while waiting; it
	// doubles, with jitter, up to WaitBackoffMax. The doubling keeps a short
	// load's waiters quick, and the cap bounds both what a long wait costs
	// Redis (a re-read per waiting process every 3/4 WaitBackoffMax on
	// average) and how late a waiter sees the value, or takes over a lapsed
	// lease. Defaults: 2ms and LeaseTTL/8 (250ms).
	WaitBackoff    time.Duration
	WaitBackoffMax time.Duration

	// FailureTTL is how long a failed load answers for the key: its reader
	// replaces its own lease (compare-and-set, never anything else) with a
	// failure marker that lasts FailureTTL, and the readers waiting for that
	// lease, and those that arrive while it stands, fail with ErrLoadFailed
	// instead of each loading again: a short circuit breaker for a failing
	// database. The marker is never a value: an invalidation deletes it like
	// a lease, and once it expires the next reader loads. A negative
	// FailureTTL turns failure markers off: a failed load gives its lease
	// back, and the next reader loads at once. Default: LeaseTTL/4 up to
	// 500ms (500ms with the default LeaseTTL), and at least WaitBackoffMax,
	// so that every waiter re-reads while it stands.
	FailureTTL time.Duration

	// LoadTimeout bounds one load: the loader's ctx, the renewal of its
	// lease, and the store (MaxWait bounds the waiting before it). Callers
	// merged into one load each stop waiting when their own ctx ends, but
	// the load goes on for the others, so it runs under this timeout rather
	// than under any one caller's ctx. A loader still running at
	// LoadTimeout (one that ignores its ctx, say) is abandoned: the load
	// fails with an error wrapping context.DeadlineExceeded, for the read
	// that started it and the reads joined to it, its lease is replaced by
	// a failure marker (see FailureTTL), and what the loader returns later
	// is dropped. So a hung loader holds its key for at most LoadTimeout
	// plus FailureTTL, in its own process as in others (plus LeaseTTL if
	// Redis cannot be reached to replace the lease). Default: 30s.
	LoadTimeout time.Duration

	// Logger receives debug logs of refused stores and warnings of failed
	// ones. Default: slog.Default().
	Logger *slog.Logger

	// Metrics receives the counters (see NewMetrics); several Caches may
	// share one. Default: nil, counted nowhere.
	Metrics *Metrics

	// Rand is the source of TTL jitter; it must be safe for concurrent use.
	// Default: nil, the math/rand/v2 top-level source.
	Rand keyspec.Rand
}

// Validate reports the first configuration problem, naming the field.
func (c Config) Validate() error {
	switch {
	case c.Redis == nil:
		return errors.New("cacheaside: Config.Redis is nil (pass the redis.UniversalClient of the cache Redis)")
	case c.TTL < 0:
		return fmt.Errorf("cacheaside: TTL %s is negative; use 0 for no expiry", c.TTL)
	case !(c.Jitter >= 0 && c.Jitter <= keyspec.MaxJitter):
		return fmt.Errorf("cacheaside: Jitter %v is outside [0, %v]; it is a fraction of the TTL, e.g. 0.1", c.Jitter, keyspec.MaxJitter)
	case c.Class != nil && (c.TTL != 0 || c.Jitter != 0):
		return fmt.Errorf("cacheaside: both Class %q and TTL/Jitter are set; set one", c.Class.Name)
	case c.NegativeTTL < 0:
		return fmt.Errorf("cacheaside: NegativeTTL %s is negative; use 0 to not cache absence", c.NegativeTTL)
	case c.LeaseTTL < 0:
		return fmt.Errorf("cacheaside: LeaseTTL %s is negative", c.LeaseTTL)
	case c.LeaseTTL > 0 && c.LeaseTTL < time.Millisecond:
		return fmt.Errorf("cacheaside: LeaseTTL %s is under the 1ms resolution of Redis PX", c.LeaseTTL)
	case c.MaxWait < 0:
		return fmt.Errorf("cacheaside: MaxWait %s is negative", c.MaxWait)
	case c.WaitBackoff < 0 || c.WaitBackoffMax < 0:
		return fmt.Errorf("cacheaside: WaitBackoff %s or WaitBackoffMax %s is negative", c.WaitBackoff, c.WaitBackoffMax)
	case c.LoadTimeout < 0:
		return fmt.Errorf("cacheaside: LoadTimeout %s is negative", c.LoadTimeout)
	}
	return nil
}

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Class != nil {
		c.TTL, c.Jitter = c.Class.TTL, c.Class.Jitter
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.WaitBackoff == 0 {
		c.WaitBackoff = DefaultWaitBackoff
	}
	if c.WaitBackoffMax == 0 {
		c.WaitBackoffMax = c.LeaseTTL / 8
	}
	c.WaitBackoffMax = max(c.WaitBackoffMax, c.WaitBackoff)
	if c.LoadTimeout == 0 {
		c.LoadTimeout = DefaultLoadTimeout
	}
	if c.MaxWait == 0 {
		c.MaxWait = c.LoadTimeout
	}
	if c.FailureTTL == 0 {
		c.FailureTTL = max(min(c.LeaseTTL/4, maxDefaultFailureTTL), c.WaitBackoffMax)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = newMetrics()
	}
	return c
}
