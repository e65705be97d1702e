package cacheaside_test

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
)

// getAsync starts c.Get and returns a channel that gets its value or its
// error's text.
func getAsync(ctx context.Context, c *cacheaside.Cache, key string, load cacheaside.Loader) <-chan string {
	out := make(chan string, 1)
	go func() {
		v, err := c.Get(ctx, key, load)
		if err != nil {
			v = []byte("error: " + err.Error())
		}
		out <- string(v)
	}()
	return out
}

// A loader that ignores its ctx is abandoned at LoadTimeout: the read that
// started it fails, so does a read that joined it in the same process (at
// LoadTimeout, not at its own deadline), and after an invalidation the key
// is free for the next read of that process. (Before, the joined read hung
// until its own ctx ended, and so did every later read of the key in that
// process.)
func TestGetHungLoaderAbandonedAtLoadTimeout(t *testing.T) {
	t.Parallel()
	// MaxWait well past LoadTimeout, so that the joined read's own bound
	// does not end its wait first.
	// FailureTTL an hour: the failure stands until the invalidation.
	b := setup(t, cacheaside.Config{LoadTimeout: 300 * time.Millisecond, LeaseTTL: 200 * time.Millisecond, MaxWait: 2 * time.Second,
		FailureTTL: time.Hour})
	flights := make(chan struct{}, 4)
	cacheaside.OnFlight(b.cache, func() { flights <- struct{}{} })
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	started := make(chan struct{})
	first := getAsync(context.Background(), b.cache, "hang", func(context.Context) ([]byte, error) {
		close(started)
		<-release // ignores its ctx
		return []byte("late"), nil
	})
	<-started
	<-flights

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	src := newSource("fresh")
	_, err := b.cache.Get(ctx, "hang", src.load) // joins the hung load
	require.NoError(t, ctx.Err(), "a read joined to a hung load waited until its own deadline: %v", err)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "LoadTimeout")
	require.Contains(t, <-first, "LoadTimeout")
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_load_timeouts_total"))
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_loader_errors_total"))

	_, err = b.cache.Get(t.Context(), "hang", src.load)
	require.ErrorIs(t, err, cacheaside.ErrLoadFailed, "the timeout stands for FailureTTL")
	require.NoError(t, b.rdb.Unlink(t.Context(), "hang").Err())
	require.Equal(t, "fresh", get(t, b.cache, "hang", src.load), "the key is free again in the holder's process")
	require.EqualValues(t, 1, src.calls.Load())
}

// A read that joins a load in its own process waits for it at most
// MaxWait, as a waiter for another process's lease would, and then fails
// with ErrWaitTimeout; the load goes on for the read that started it.
func TestGetJoinedReadBoundedByMaxWait(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{MaxWait: 50 * time.Millisecond, LoadTimeout: time.Minute})
	flights := make(chan struct{}, 4)
	cacheaside.OnFlight(b.cache, func() { flights <- struct{}{} })
	g := newGate(newSource("v1"))
	leader := getAsync(context.Background(), b.cache, "k", g.load)
	<-g.loaded
	<-flights

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err := b.cache.Get(ctx, "k", g.src.load)
	require.ErrorIs(t, err, cacheaside.ErrWaitTimeout, "a read joined to a slow load is not bounded by MaxWait")
	require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	require.ErrorContains(t, err, "in this process")
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_wait_timeouts_total"))

	close(g.release)
	require.Equal(t, "v1", <-leader)
	require.EqualValues(t, 1, g.src.calls.Load(), "the read that timed out loaded nothing")
}

// An invalidation that deletes the lease of a load in progress frees the
// key for every other reader: a waiter in another process takes it over at
// its next re-read, and a read joined to that load in its own process
// leaves it at the holder's next renewal and reads again, without waiting
// for a load whose value will not be stored.
func TestGetJoinedReadLeavesLoadWhoseLeaseWent(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{LeaseTTL: 60 * time.Millisecond, MaxWait: time.Minute})
	flights := make(chan struct{}, 4)
	cacheaside.OnFlight(b.cache, func() { flights <- struct{}{} })
	src := newSource("old")
	g := newGate(src)
	leader := getAsync(context.Background(), b.cache, "k", g.load)
	require.Equal(t, "old", <-g.loaded)
	<-flights

	follower := getAsync(context.Background(), b.cache, "k", src.load)
	<-flights // joined
	src.set("new")
	require.NoError(t, b.rdb.Unlink(t.Context(), "k").Err())
	select {
	case v := <-follower:
		require.Equal(t, "new", v)
	case <-time.After(5 * time.Second):
		t.Fatal("the joined read still waits for a load whose lease an invalidation deleted")
	}
	close(g.release)
	require.Equal(t, "old", <-leader, "the read that began before the write may see the old row")
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_stale_stores_prevented_total"))
	require.Equal(t, "vnew", b.rdb.Get(t.Context(), "k").Val())
}

// Reads that give up mid-load, loads that outlast LeaseTTL (renewals) or
// LoadTimeout (abandoned loaders), invalidations mid-load: once the loads
// have returned, no goroutine of cacheaside is left behind. Not parallel:
// it counts the goroutines of the whole test binary.
func TestGetLeavesNoGoroutineBehind(t *testing.T) {
	b := setup(t, cacheaside.Config{LeaseTTL: 30 * time.Millisecond, LoadTimeout: 60 * time.Millisecond})
	before := runtime.NumGoroutine()
	returned := make(chan struct{}, 200)
	var reads sync.WaitGroup
	for i := range 200 {
		ctx, cancel := context.WithTimeout(t.Context(), time.Duration(i%5)*10*time.Millisecond)
		key := "leak" + strconv.Itoa(i%7)
		reads.Go(func() {
			defer cancel()
			_, _ = b.cache.Get(ctx, key, func(context.Context) ([]byte, error) {
				defer func() { returned <- struct{}{} }()
				time.Sleep(time.Duration(20+i%5*20) * time.Millisecond) // some past LoadTimeout
				return []byte("v"), nil
			})
		})
		if i%3 == 0 {
			require.NoError(t, b.rdb.Unlink(t.Context(), key).Err())
		}
	}
	reads.Wait()
	waitFor(t, "every loader to return", func() bool {
		return len(returned) == int(metric(t, b.reg, "invalidator_cacheaside_loads_total"))
	})
	waitFor(t, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= before+2 })
	require.Positive(t, metric(t, b.reg, "invalidator_cacheaside_load_timeouts_total"), "no loader was abandoned")
	require.Positive(t, metric(t, b.reg, "invalidator_cacheaside_lease_renewals_total"), "no lease was renewed")
}
