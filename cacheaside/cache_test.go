package cacheaside_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/keyspec"
)

func TestGetMissThenHit(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{TTL: time.Minute})
	src := newSource("v1")

	require.Equal(t, "v1", get(t, b.cache, "user:1", src.load))
	require.Equal(t, "v1", get(t, b.cache, "user:1", src.load))
	require.EqualValues(t, 1, src.calls.Load(), "the second read is a hit")

	raw, err := b.rdb.Get(t.Context(), "user:1").Result()
	require.NoError(t, err)
	require.Equal(t, "vv1", raw, "values are stored behind the 'v' tag")
	ttl, err := b.rdb.PTTL(t.Context(), "user:1").Result()
	require.NoError(t, err)
	require.True(t, ttl > 0 && ttl <= time.Minute, "TTL %s, want the configured minute, not the lease's", ttl)

	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_hits_total"))
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_misses_total"))
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_loads_total"))
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_load_duration_seconds"))
}

func TestGetEmptyAndBinaryValues(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{})
	for key, val := range map[string]string{"empty": "", "binary": "\x00\xff\x80l\r\n"} {
		src := newSource(val)
		require.Equal(t, val, get(t, b.cache, key, src.load))
		require.Equal(t, val, get(t, b.cache, key, src.load))
		require.EqualValues(t, 1, src.calls.Load(), key)
	}
}

// The race of issue 5: a reader misses and loads the old row; the writer
// commits and the invalidation deletes the key; the reader's store must be
// refused, so the next read loads the new row.
func TestGetStaleStoreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{TTL: time.Hour})
	src := newSource("old")
	g := newGate(src)

	got := make(chan string, 1)
	go func() {
		v, err := b.cache.Get(context.Background(), "price:42", g.load)
		if err != nil {
			v = []byte(err.Error())
		}
		got <- string(v)
	}()
	require.Equal(t, "old", <-g.loaded, "the reader has read the old row")

	src.set("new")                                                  // the writer commits
	require.NoError(t, b.rdb.Unlink(t.Context(), "price:42").Err()) // the worker applies the invalidation
	close(g.release)

	require.Equal(t, "old", <-got, "the reader that started before the write may see the old row")
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_stale_stores_prevented_total"))
	n, err := b.rdb.Exists(t.Context(), "price:42").Result()
	require.NoError(t, err)
	require.Zero(t, n, "the old row was not stored")

	require.Equal(t, "new", get(t, b.cache, "price:42", src.load), "the next read loads the new row")
	require.Equal(t, "new", get(t, b.cache, "price:42", src.load))
}

// Without the invalidation, the same reader stores its value.
func TestGetStoreWithoutInvalidation(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{})
	g := newGate(newSource("v1"))
	close(g.release)
	require.Equal(t, "v1", get(t, b.cache, "k", g.load))
	require.Zero(t, metric(t, b.reg, "invalidator_cacheaside_stale_stores_prevented_total"))
	raw, err := b.rdb.Get(t.Context(), "k").Result()
	require.NoError(t, err)
	require.Equal(t, "vv1", raw)
}

// A user value with a marker's bytes is a value, never a lease.
func TestGetUserValueLooksLikeMarker(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{MaxWait: time.Hour})
	for _, val := range []string{"l", "lABCDEFGHIJKLMNOPQRSTUVWXYZ", "n", "v", "vv"} {
		src := newSource(val)
		require.Equal(t, val, get(t, b.cache, "key:"+val, src.load))
		// With MaxWait an hour, a value taken for a lease would hang here.
		require.Equal(t, val, get(t, b.cache, "key:"+val, src.load))
		require.EqualValues(t, 1, src.calls.Load(), "value %q", val)
	}
	require.Zero(t, metric(t, b.reg, "invalidator_cacheaside_lease_waits_total"))

	// And another reader's marker is a lease, never a value: a Get that finds
	// one waits for it.
	require.NoError(t, b.rdb.Set(t.Context(), "held", "lSOMEONEELSE234567ABCDEFGH", 50*time.Millisecond).Err())
	require.Equal(t, "mine", get(t, b.cache, "held", newSource("mine").load))
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_lease_waits_total"))
}

func TestGetForeignValue(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{})
	require.NoError(t, b.rdb.Set(t.Context(), "plain", "hello", 0).Err())
	src := newSource("x")
	_, err := b.cache.Get(t.Context(), "plain", src.load)
	require.ErrorIs(t, err, cacheaside.ErrForeignValue)
	require.ErrorContains(t, err, `"plain"`)
	require.Zero(t, src.calls.Load())
	raw, err := b.rdb.Get(t.Context(), "plain").Result()
	require.NoError(t, err)
	require.Equal(t, "hello", raw, "a foreign value is left alone")
}

// A reader that finds another process's lease waits for its value instead of
// loading.
func TestGetWaitsForLease(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{MaxWait: time.Minute})
	other, otherReg := newCache(t, b.rdb, cacheaside.Config{MaxWait: time.Minute}) // another process
	src := newSource("v1")
	g := newGate(src)

	first := make(chan error, 1)
	go func() {
		_, err := b.cache.Get(context.Background(), "hot", g.load)
		first <- err
	}()
	<-g.loaded // the first reader holds the lease

	second := make(chan string, 1)
	go func() {
		v, err := other.Get(context.Background(), "hot", src.load)
		if err != nil {
			v = []byte(err.Error())
		}
		second <- string(v)
	}()
	waitFor(t, "the second reader to wait", func() bool { return metric(t, otherReg, "invalidator_cacheaside_lease_waits_total") == 1 })
	close(g.release)
	require.NoError(t, <-first)
	require.Equal(t, "v1", <-second)
	require.EqualValues(t, 1, src.calls.Load(), "only the lease holder loaded")
	require.EqualValues(t, 1, metric(t, otherReg, "invalidator_cacheaside_hits_total"))
}

// A lease that stays held past MaxWait (here a marker with an hour's TTL,
// as only a foreign writer leaves) fails the read with ErrWaitTimeout: the
// reader loads nothing and stores nothing over another's lease.
func TestGetWaitBound(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{MaxWait: 30 * time.Millisecond})
	const marker = "lDEADHOLDER234567ABCDEFGHI"
	require.NoError(t, b.rdb.Set(t.Context(), "k", marker, time.Hour).Err())
	src := newSource("v1")
	_, err := b.cache.Get(t.Context(), "k", src.load)
	require.ErrorIs(t, err, cacheaside.ErrWaitTimeout)
	require.ErrorContains(t, err, `"k"`)
	require.Zero(t, src.calls.Load(), "a reader at its bound does not add a load")
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_wait_timeouts_total"))
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_lease_wait_duration_seconds"))
	raw, err := b.rdb.Get(t.Context(), "k").Result()
	require.NoError(t, err)
	require.Equal(t, marker, raw, "the reader stored nothing over another's lease")
}

// When a dead holder's lease expires, the next reader takes the lease: one
// load per lease period.
func TestGetExpiredLeaseIsTakenOver(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{MaxWait: time.Minute})
	require.NoError(t, b.rdb.Set(t.Context(), "k", "lDEADHOLDER234567ABCDEFGHI", 50*time.Millisecond).Err())
	src := newSource("v1")
	require.Equal(t, "v1", get(t, b.cache, "k", src.load))
	require.Zero(t, metric(t, b.reg, "invalidator_cacheaside_wait_timeouts_total"))
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_lease_takeovers_total"))
	raw, err := b.rdb.Get(t.Context(), "k").Result()
	require.NoError(t, err)
	require.Equal(t, "vv1", raw, "stored under the reader's own lease")
}

// 1,000 readers of one hot key in two processes (two Caches, two
// connection pools) cause exactly one load.
func TestGetHerdAcrossTwoProcesses(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{MaxWait: time.Minute})
	opts, err := redis.ParseURL(b.url)
	require.NoError(t, err)
	rdb2 := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb2.Close() })
	other, _ := newCache(t, rdb2, cacheaside.Config{MaxWait: time.Minute})

	src := newSource("hot value")
	load := func(ctx context.Context) ([]byte, error) {
		time.Sleep(50 * time.Millisecond) // a database read: long enough for the herd to pile up
		return src.load(ctx)
	}
	const readers = 1000
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for i := range readers {
		c := b.cache
		if i%2 == 1 {
			c = other
		}
		wg.Go(func() {
			<-start
			v, err := c.Get(context.Background(), "product:{7}:page", load)
			if err == nil && string(v) != "hot value" {
				err = errors.New("wrong value " + string(v))
			}
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, src.calls.Load(), "one load for the whole herd")
}

func TestGetNegativeCaching(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{NegativeTTL: time.Minute})
	var calls int
	missing := func(context.Context) ([]byte, error) {
		calls++
		return nil, errors.Join(errors.New("row 9 is not in table users"), cacheaside.ErrNotFound)
	}
	for range 2 {
		_, err := b.cache.Get(t.Context(), "user:9", missing)
		require.ErrorIs(t, err, cacheaside.ErrNotFound)
	}
	require.Equal(t, 1, calls, "the absence is cached")
	raw, err := b.rdb.Get(t.Context(), "user:9").Result()
	require.NoError(t, err)
	require.Equal(t, "n", raw)
	ttl, err := b.rdb.PTTL(t.Context(), "user:9").Result()
	require.NoError(t, err)
	require.True(t, ttl > 0 && ttl <= time.Minute, "negative TTL %s", ttl)
	require.Zero(t, metric(t, b.reg, "invalidator_cacheaside_loader_errors_total"), "not found is no loader error")

	// The row is created and the key invalidated: the next read loads it.
	require.NoError(t, b.rdb.Unlink(t.Context(), "user:9").Err())
	require.Equal(t, "alice", get(t, b.cache, "user:9", newSource("alice").load))
}

func TestGetNotFoundUncachedByDefault(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{})
	var calls int
	missing := func(context.Context) ([]byte, error) { calls++; return nil, cacheaside.ErrNotFound }
	for range 2 {
		_, err := b.cache.Get(t.Context(), "user:9", missing)
		require.ErrorIs(t, err, cacheaside.ErrNotFound)
	}
	require.Equal(t, 2, calls)
	n, err := b.rdb.Exists(t.Context(), "user:9").Result()
	require.NoError(t, err)
	require.Zero(t, n, "the lease was given back")
}

// With failure markers off (FailureTTL negative), a failed load gives its
// lease back and nothing of it stays: the next reader loads at once.
func TestGetLoaderErrorWithoutFailureMarker(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{MaxWait: time.Hour, FailureTTL: -1})
	boom := errors.New("database is down")
	_, err := b.cache.Get(t.Context(), "k", func(context.Context) ([]byte, error) { return nil, boom })
	require.ErrorIs(t, err, boom)
	require.ErrorIs(t, err, cacheaside.ErrLoadFailed)
	require.ErrorContains(t, err, `"k"`)
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_loader_errors_total"))
	require.Zero(t, metric(t, b.reg, "invalidator_cacheaside_failure_markers_total"))

	// The lease was given back: the next reader loads at once (with MaxWait
	// an hour, a lease left behind would hang it).
	require.Equal(t, "v1", get(t, b.cache, "k", newSource("v1").load))
	require.Zero(t, metric(t, b.reg, "invalidator_cacheaside_lease_waits_total"))
}

// A caller that gives up returns at once; the load it started goes on and
// is stored for the next reader.
func TestGetCallerCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{})
	src := newSource("v1")
	g := newGate(src)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := b.cache.Get(ctx, "k", g.load)
		done <- err
	}()
	<-g.loaded
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	close(g.release)
	waitFor(t, "the load to be stored", func() bool { return b.rdb.Get(t.Context(), "k").Val() == "vv1" })
	require.Equal(t, "v1", get(t, b.cache, "k", src.load))
	require.EqualValues(t, 1, src.calls.Load())
}

func TestGetFamily(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{})
	fam, err := keyspec.NewFamily("price", "price:{sku}", keyspec.FamilyOptions{TTL: time.Minute, Jitter: 0.1})
	require.NoError(t, err)
	src := newSource("9.99")
	v, err := b.cache.GetFamily(t.Context(), fam, map[string]string{"sku": "42"}, src.load)
	require.NoError(t, err)
	require.Equal(t, "9.99", string(v))
	ttl, err := b.rdb.PTTL(t.Context(), "price:42").Result()
	require.NoError(t, err)
	require.True(t, ttl > 50*time.Second && ttl <= 66*time.Second, "TTL %s, want the family's minute ±10%%", ttl)

	_, err = b.cache.GetFamily(t.Context(), fam, map[string]string{}, src.load)
	require.ErrorIs(t, err, keyspec.ErrMissingParam)

	ver, err := keyspec.NewFamily("feed", "feed:{user}", keyspec.FamilyOptions{Strategy: keyspec.StrategyVersion})
	require.NoError(t, err)
	_, err = b.cache.GetFamily(t.Context(), ver, map[string]string{"user": "1"}, src.load)
	require.ErrorIs(t, err, keyspec.ErrVersioned)
}

func TestGetClassTTL(t *testing.T) {
	t.Parallel()
	class := keyspec.NewClass("critical")
	class.TTL = 30 * time.Second
	b := setup(t, cacheaside.Config{Class: class})
	get(t, b.cache, "k", newSource("v").load)
	ttl, err := b.rdb.PTTL(t.Context(), "k").Result()
	require.NoError(t, err)
	require.True(t, ttl > 20*time.Second && ttl <= 30*time.Second, "TTL %s, want the class's 30s", ttl)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "unused:1"})
	t.Cleanup(func() { _ = rdb.Close() })
	for name, tc := range map[string]struct {
		cfg  cacheaside.Config
		want string
	}{
		"no redis":       {cacheaside.Config{}, "Config.Redis is nil"},
		"negative ttl":   {cacheaside.Config{Redis: rdb, TTL: -1}, "TTL -1ns is negative"},
		"jitter":         {cacheaside.Config{Redis: rdb, Jitter: 0.9}, "Jitter 0.9 is outside"},
		"class and ttl":  {cacheaside.Config{Redis: rdb, TTL: 1, Class: keyspec.NewClass("c")}, "set one"},
		"negative ttl 2": {cacheaside.Config{Redis: rdb, NegativeTTL: -1}, "NegativeTTL"},
		"lease":          {cacheaside.Config{Redis: rdb, LeaseTTL: time.Microsecond}, "LeaseTTL"},
		"wait":           {cacheaside.Config{Redis: rdb, MaxWait: -1}, "MaxWait"},
		"backoff":        {cacheaside.Config{Redis: rdb, WaitBackoffMax: -1}, "WaitBackoffMax"},
		"load timeout":   {cacheaside.Config{Redis: rdb, LoadTimeout: -1}, "LoadTimeout"},
	} {
		_, err := cacheaside.New(tc.cfg)
		require.ErrorContains(t, err, tc.want, name)
	}
	_, err := cacheaside.New(cacheaside.Config{Redis: rdb})
	require.NoError(t, err)
}

// A caller that joins, through singleflight, a load during which the key
// was invalidated must not take that load's value: the load may have read
// the row before the write, and this caller started after it. It reads
// again instead. The caller that started the load keeps its value: its
// read began before the write.
func TestGetJoinedCallerRetriesRefusedLoad(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{})
	flights := make(chan struct{}, 4)
	cacheaside.OnFlight(b.cache, func() { flights <- struct{}{} })
	src := newSource("old")
	g := newGate(src)

	leader := make(chan string, 1)
	go func() {
		v, _ := b.cache.Get(context.Background(), "k", g.load)
		leader <- string(v)
	}()
	require.Equal(t, "old", <-g.loaded)
	<-flights // the leader's
	src.set("new")
	require.NoError(t, b.rdb.Unlink(t.Context(), "k").Err())

	follower := make(chan string, 1)
	go func() {
		v, _ := b.cache.Get(context.Background(), "k", src.load) // starts after the invalidation
		follower <- string(v)
	}()
	<-flights // the follower has joined the leader's load, still held by the gate
	close(g.release)
	require.Equal(t, "old", <-leader)
	require.Equal(t, "new", <-follower, "a read that joined a load refused by an invalidation took its value")
	require.EqualValues(t, 2, src.calls.Load(), "the follower loaded again")
}

// A read that joins a flight after the flight's final request (the lookup
// that found the value, or the store) was sent must not take its value:
// an invalidation may have run and returned in between, before the read
// began. Here the reply of that request is held while the write commits,
// its invalidation returns, and a second read joins the flight.
func TestGetJoinAfterFinalRequestRereads(t *testing.T) {
	t.Parallel()
	for name, match := range map[string]func(redis.Cmder) bool{"hit": isValueHit, "store": isValueStore} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, cacheaside.Config{})
			opts, err := redis.ParseURL(b.url)
			require.NoError(t, err)
			rdb := redis.NewClient(opts)
			t.Cleanup(func() { _ = rdb.Close() })
			hold := newReplyHold(match)
			rdb.AddHook(hold)
			c, _ := newCache(t, rdb, cacheaside.Config{})
			flights := make(chan struct{}, 4)
			cacheaside.OnFlight(c, func() { flights <- struct{}{} })
			src := newSource("old")
			if name == "hit" {
				require.Equal(t, "old", get(t, c, "k", src.load))
				<-flights
			}

			hold.armed.Store(true)
			leader := make(chan string, 1)
			go func() {
				v, err := c.Get(context.Background(), "k", src.load)
				if err != nil {
					v = []byte(err.Error())
				}
				leader <- string(v)
			}()
			<-flights
			<-hold.held // Redis answered the flight's final request; the answer is on its way
			src.set("new")
			require.NoError(t, b.rdb.Unlink(t.Context(), "k").Err())

			follower := make(chan string, 1)
			go func() {
				v, err := c.Get(context.Background(), "k", src.load) // begins after the invalidation returned
				if err != nil {
					v = []byte(err.Error())
				}
				follower <- string(v)
			}()
			<-flights // the follower has joined the flight
			close(hold.release)
			require.Equal(t, "old", <-leader, "the read that began before the write may see the old row")
			require.Equal(t, "new", <-follower, "a read that began after the invalidation returned took the old row")
		})
	}
}
