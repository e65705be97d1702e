package freshness

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/cmd/invalidator/internal/sim"
)

// Reader kinds, as named in reports.
const (
	kindCacheAside = "cacheaside"
	kindControl    = "control"
)

// readFunc reads a row's key through one kind of cache: from the cache, or
// on a miss from load. proc picks the process (cache instance).
type readFunc func(ctx context.Context, proc int, key string, load cacheaside.Loader) ([]byte, error)

// kind is one kind of reader and what it counted.
type kind struct {
	name   string
	prefix string // of its keys
	read   readFunc

	reads, errs, stale atomic.Int64
	loads, hotLoads    atomic.Int64
	forcedStale        atomic.Int64
	superseded         *sim.Histogram // staleness of superseded reads
}

func newKind(name, prefix string, read readFunc) *kind {
	return &kind{name: name, prefix: prefix, read: read, superseded: sim.NewHistogram()}
}

// key is the kind's cache key of row.
func (k *kind) key(row string) string { return k.prefix + row }

// cacheAsideRead reads through cacheaside, spreading processes over caches.
func cacheAsideRead(caches []*cacheaside.Cache) readFunc {
	return func(ctx context.Context, proc int, key string, load cacheaside.Loader) ([]byte, error) {
		return caches[proc%len(caches)].Get(ctx, key, load)
	}
}

// controlRead is plain cache-aside: GET, and on a miss load and SET. It has
// the race cacheaside closes: a SET after an invalidation stores the old row.
func controlRead(rdb redis.UniversalClient, ttl time.Duration) readFunc {
	return func(ctx context.Context, _ int, key string, load cacheaside.Loader) ([]byte, error) {
		v, err := rdb.Get(ctx, key).Bytes()
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("control: get %q: %w", key, err)
		}
		v, err = load(ctx)
		if err != nil {
			return nil, err
		}
		if err := rdb.Set(ctx, key, v, ttl).Err(); err != nil {
			return nil, fmt.Errorf("control: set %q: %w", key, err)
		}
		return v, nil
	}
}

// parseVersion decodes a cached row: its version in decimal.
func parseVersion(b []byte) (int64, error) {
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cached row %q is not a version", b)
	}
	return v, nil
}
