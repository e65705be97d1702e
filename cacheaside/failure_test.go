package cacheaside_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
)

// dbError is a loader error whose text holds a secret, as a driver's
// error may (a DSN, a row).
type dbError struct{ text string }

func (e *dbError) Error() string { return e.text }

const secret = "password=hunter2"

func failing(calls *atomic.Int64, delay time.Duration) cacheaside.Loader {
	return func(context.Context) ([]byte, error) {
		calls.Add(1)
		time.Sleep(delay)
		return nil, &dbError{"connect postgres://app:" + secret + "@db: connection refused"}
	}
}

// A failed load replaces its lease with a failure marker: readers elsewhere
// fail with ErrLoadFailed without loading, and learn the kind of error but
// not its text. An invalidation deletes the marker like a lease.
func TestGetFailedLoadLeavesFailureMarker(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{FailureTTL: time.Hour})
	other, otherReg := newCache(t, b.rdb, cacheaside.Config{}) // another process
	var calls atomic.Int64

	_, err := b.cache.Get(t.Context(), "k", failing(&calls, 0))
	require.ErrorIs(t, err, cacheaside.ErrLoadFailed)
	var de *dbError
	require.ErrorAs(t, err, &de, "the reader that loaded gets its loader's error")
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_failure_markers_total"))

	raw, err := b.rdb.Get(t.Context(), "k").Result()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(raw, "f"), "key holds %q, want a failure marker", raw)
	require.NotContains(t, raw, "hunter2")
	ttl, err := b.rdb.PTTL(t.Context(), "k").Result()
	require.NoError(t, err)
	require.True(t, ttl > 0 && ttl <= time.Hour, "failure marker TTL %s, want FailureTTL", ttl)

	_, err = other.Get(t.Context(), "k", failing(&calls, 0))
	require.ErrorIs(t, err, cacheaside.ErrLoadFailed)
	require.NotErrorAs(t, err, &de)
	require.ErrorContains(t, err, "dbError", "the kind of error is told")
	require.NotContains(t, err.Error(), "hunter2", "the loader's error text stays with the reader that loaded")
	require.EqualValues(t, 1, calls.Load(), "the reader that found the marker loaded nothing")
	require.EqualValues(t, 1, metric(t, otherReg, "invalidator_cacheaside_failure_marker_reads_total"))
	require.Zero(t, metric(t, otherReg, "invalidator_cacheaside_misses_total")+metric(t, otherReg, "invalidator_cacheaside_hits_total"))

	require.NoError(t, b.rdb.Unlink(t.Context(), "k").Err())
	require.Equal(t, "v1", get(t, other, "k", newSource("v1").load), "after an invalidation the next reader loads")
}

// By default a failure stands for LeaseTTL/4 capped at 500ms; once it
// expires, the next reader loads.
func TestGetFailureMarkerExpires(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{})
	var calls atomic.Int64
	_, err := b.cache.Get(t.Context(), "k", failing(&calls, 0))
	require.ErrorIs(t, err, cacheaside.ErrLoadFailed)
	ttl, err := b.rdb.PTTL(t.Context(), "k").Result()
	require.NoError(t, err)
	require.True(t, ttl > 0 && ttl <= 500*time.Millisecond, "failure marker TTL %s, want at most 500ms", ttl)
	waitFor(t, "the failure marker to expire", func() bool { return b.rdb.Exists(t.Context(), "k").Val() == 0 })
	require.Equal(t, "v1", get(t, b.cache, "k", newSource("v1").load))
}

// The failure marker is a compare-and-set on the failing reader's own
// lease: when an invalidation deleted that lease mid-load and another
// reader has leased the key since, the failure is not recorded and the
// other reader's lease is left alone.
func TestGetFailureMarkerNeverCoversAnotherLease(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{FailureTTL: time.Hour})
	loaded := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := b.cache.Get(context.Background(), "k", func(context.Context) ([]byte, error) {
			close(loaded)
			<-release
			return nil, errors.New("db down")
		})
		done <- err
	}()
	<-loaded
	require.NoError(t, b.rdb.Unlink(t.Context(), "k").Err())
	const theirs = "lANOTHERREADER234567ABCDEF"
	require.NoError(t, b.rdb.Set(t.Context(), "k", theirs, time.Minute).Err())
	close(release)
	require.ErrorIs(t, <-done, cacheaside.ErrLoadFailed)
	require.Equal(t, theirs, b.rdb.Get(t.Context(), "k").Val())
	require.Zero(t, metric(t, b.reg, "invalidator_cacheaside_failure_markers_total"))
}

// A failed versioned load marks the data key at the version read; a bump
// moves readers to a new data key, where the next reader loads.
func TestGetVersionedFailureMarker(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{FailureTTL: time.Hour})
	p := feedPolicy(t)
	fam, err := p.Family("feed")
	require.NoError(t, err)
	params := map[string]string{"user": "7"}
	var calls atomic.Int64
	for range 2 {
		_, err = b.cache.GetVersioned(t.Context(), fam, params, failing(&calls, 0))
		require.ErrorIs(t, err, cacheaside.ErrLoadFailed)
	}
	require.EqualValues(t, 1, calls.Load(), "the second read found the failure marker")
	bump(t, b.rdb, p, "feed", params)
	v, err := b.cache.GetVersioned(t.Context(), fam, params, newSource("page").load)
	require.NoError(t, err)
	require.Equal(t, "page", string(v))
}

// herdOnFailingLoader runs readers, each a Cache of its own (another process,
// as far as the lease can tell), against one key whose loader fails after
// delay; it returns the loads, the errors by kind, and the slowest read.
func herdOnFailingLoader(t *testing.T, readers int, delay time.Duration, cfg cacheaside.Config) (loads int64, failed, timeouts, other int, slowest time.Duration) {
	t.Helper()
	b := setup(t, cfg)
	caches := make([]*cacheaside.Cache, readers)
	for i := range caches {
		caches[i], _ = newCache(t, b.rdb, cfg)
	}
	var calls atomic.Int64
	load := failing(&calls, delay)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, c := range caches {
		wg.Go(func() {
			<-start
			began := time.Now()
			_, err := c.Get(t.Context(), "down", load)
			took := time.Since(began)
			mu.Lock()
			defer mu.Unlock()
			slowest = max(slowest, took)
			switch {
			case errors.Is(err, cacheaside.ErrWaitTimeout):
				timeouts++
			case errors.Is(err, cacheaside.ErrLoadFailed):
				failed++
			default:
				other++
				t.Errorf("read: %v, want ErrLoadFailed", err)
			}
		})
	}
	close(start)
	wg.Wait()
	return calls.Load(), failed, timeouts, other, slowest
}

// Issue 10 review: a database that fails fast. Each failed load used to
// give its lease to the next waiter, so 200 readers made 200 loads one
// after another (6.1s). The failure now reaches them all.
func TestGetHerdOnFailingLoader(t *testing.T) {
	t.Parallel()
	loads, failed, timeouts, _, slowest := herdOnFailingLoader(t, 200, 20*time.Millisecond, cacheaside.Config{})
	t.Logf("200 readers, loader fails after 20ms: %d loads, %d ErrLoadFailed, %d ErrWaitTimeout, slowest read %s", loads, failed, timeouts, slowest)
	require.LessOrEqual(t, loads, int64(2))
	require.Equal(t, 200, failed)
	require.Less(t, slowest, 2*time.Second, "a generous bound: the failure takes one load and a re-read")
}

// Issue 10 review: a database that fails slowly. Readers used to queue
// behind one another's failures until MaxWait: 100 readers made 11 loads,
// and 89 failed with ErrWaitTimeout after 5s. The failure now reaches them
// all, as soon as it happens.
func TestGetHerdOnSlowlyFailingLoader(t *testing.T) {
	t.Parallel()
	loads, failed, timeouts, _, slowest := herdOnFailingLoader(t, 100, 500*time.Millisecond, cacheaside.Config{LoadTimeout: 5 * time.Second})
	t.Logf("100 readers, loader fails after 500ms, MaxWait 5s: %d loads, %d ErrLoadFailed, %d ErrWaitTimeout, slowest read %s", loads, failed, timeouts, slowest)
	require.LessOrEqual(t, loads, int64(2))
	require.Equal(t, 100, failed)
	require.Less(t, slowest, 2500*time.Millisecond, "a generous bound, half of MaxWait: the failure takes one load and a re-read")
}
