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
	// DefaultLeaseTTL outlasts a slow database read by far; a reader that
	// dies while loading blocks the key for at most this long.
	DefaultLeaseTTL = 5 * time.Second
	// DefaultMaxWait is how long a reader waits for another reader's load
	// before it loads for itself (without storing).
	DefaultMaxWait = time.Second
	// DefaultWaitBackoff is the first pause between re-reads while waiting.
	DefaultWaitBackoff = 2 * time.Millisecond
	// DefaultWaitBackoffMax caps the pause between re-reads.
	DefaultWaitBackoffMax = 50 * time.Millisecond
	// DefaultLoadTimeout bounds one load shared by merged callers.
	DefaultLoadTimeout = 30 * time.Second
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

	// LeaseTTL is how long a reader's lease on a missing key lasts. A load
	// that takes longer loses its lease: its value is returned but not
	// stored, and another reader may load. Default: 5s.
	LeaseTTL time.Duration

	// MaxWait bounds how long a reader that finds another's lease waits for
	// the value. After it, the reader calls the loader itself and does not
	// store the result. Default: 1s.
	MaxWait time.Duration

	// WaitBackoff is the first pause between re-reads while waiting; it
	// doubles, with jitter, up to WaitBackoffMax. Defaults: 2ms and 50ms.
	WaitBackoff    time.Duration
	WaitBackoffMax time.Duration

	// LoadTimeout bounds one load, including the waiting before it. Callers
	// merged into one load each stop waiting when their own ctx ends, but
	// the load goes on for the others, so it runs under this timeout rather
	// than under any one caller's ctx. Default: 30s.
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
	if c.MaxWait == 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.WaitBackoff == 0 {
		c.WaitBackoff = DefaultWaitBackoff
	}
	if c.WaitBackoffMax == 0 {
		c.WaitBackoffMax = DefaultWaitBackoffMax
	}
	c.WaitBackoffMax = max(c.WaitBackoffMax, c.WaitBackoff)
	if c.LoadTimeout == 0 {
		c.LoadTimeout = DefaultLoadTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = newMetrics()
	}
	return c
}
