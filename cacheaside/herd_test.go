package cacheaside_test

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/internal/redistest"
)

// Issue 10 §6: 1,000 readers of one missing key, each a Cache of its own
// (no singleflight between them), half of them in another process, cost
// the database one load, also when the load outlasts the old 1s MaxWait.
func TestGetHerdOfSeparateCachesInTwoProcesses(t *testing.T) {
	// Not parallel: its 500 readers here would starve the goroutines of
	// other tests, whose leases lapse if their renewals are held up.
	//
	// The defaults, unless the race detector runs: a lease that lapses
	// mid-load costs one more load, by design, and 1,000 readers under the
	// race detector on a busy machine can stall the holder past the default
	// 2s lease. This test is about the herd; the tests below are about
	// renewal and lapse.
	var leaseTTL time.Duration
	if raceEnabled {
		leaseTTL = 10 * time.Second
	}
	for _, delay := range []time.Duration{50 * time.Millisecond, 1500 * time.Millisecond} {
		// One after the other: two herds at once starve each other on a
		// small machine.
		t.Run(delay.String(), func(t *testing.T) {
			const readers = 1000
			const key = "product:{7}:page"
			srv := redistest.StartServer(t) // a server of its own, for clean command counts
			rdb := srv.NewClient()

			ch := startChild(t, childSpec{Mode: "herd", URL: srv.URL(), Key: key, Readers: readers / 2, Herd: readers,
				Delay: delay, LeaseTTL: leaseTTL})
			opts, err := redis.ParseURL(srv.URL())
			require.NoError(t, err)
			mine := readerClient(t, opts, readers/2)
			reg := prometheus.NewRegistry()
			m, err := cacheaside.NewMetrics(reg)
			require.NoError(t, err)
			caches := make([]*cacheaside.Cache, readers/2)
			for i := range caches {
				caches[i], err = cacheaside.New(cacheaside.Config{Redis: mine, Metrics: m, Logger: discard(), LeaseTTL: leaseTTL})
				require.NoError(t, err)
			}
			ch.expect(t, childReady)

			before, err := commandCalls(t.Context(), rdb)
			require.NoError(t, err)
			start := time.Now()
			_, err = ch.stdin.Write([]byte("go\n"))
			require.NoError(t, err)
			here := readAll(mine, caches, key, herdLoader(mine, readers, delay))
			var there childResult
			require.NoError(t, json.Unmarshal([]byte(ch.expect(t, childResultP)), &there))
			elapsed := time.Since(start)
			after, err := commandCalls(t.Context(), rdb)
			require.NoError(t, err)
			waitRate, err := rdb.Get(t.Context(), waitRateKey).Float64()
			require.NoError(t, err)

			n := loads(t, rdb)
			mm := herdMetrics(t, reg)
			for k, v := range there.Metrics {
				mm[k] += v
			}
			// Each script call here runs one GET, and commandstats counts
			// GETs run by scripts: GET calls are all reads of the key.
			t.Logf("loader %s, lease %s: %d loads for %d readers in 2 processes; slowest read %s; %v; "+
				"%d reads of the key in %s (%d EVALSHA, %d plain GET); %.0f GETs/s while the load ran",
				delay, cmp.Or(leaseTTL, cacheaside.DefaultLeaseTTL), n, readers, max(here.Slowest, there.Slowest).Round(time.Millisecond), mm,
				after["get"]-before["get"], elapsed.Round(time.Millisecond), after["evalsha"]-before["evalsha"],
				after["get"]-before["get"]-(after["evalsha"]-before["evalsha"]), waitRate)
			require.Equal(t, readers/2, here.OK, "reads here failed: %v", here.Errors)
			require.Equal(t, readers/2, there.OK, "reads in the child failed: %v", there.Errors)
			require.LessOrEqual(t, n, int64(2), "loads for %d readers of one key with a %s loader", readers, delay)
			require.Positive(t, metric(t, reg, "invalidator_cacheaside_lease_waits_total")+there.Metrics["lease_waits"],
				"nobody waited: the herd did not overlap the load")
		})
	}
}

// discard is a logger for Caches whose logs no test reads.
func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// waiters are readers in the test process, each a Cache of its own (a
// process of its own, as far as the lease can tell), sharing one registry.
type waiters struct {
	caches []*cacheaside.Cache
	reg    *prometheus.Registry
}

func newWaiters(t *testing.T, rdb redis.UniversalClient, n int, cfg cacheaside.Config) *waiters {
	t.Helper()
	w := &waiters{reg: prometheus.NewRegistry()}
	m, err := cacheaside.NewMetrics(w.reg)
	require.NoError(t, err)
	cfg.Redis, cfg.Metrics, cfg.Logger = rdb, m, discard()
	for range n {
		c, err := cacheaside.New(cfg)
		require.NoError(t, err)
		w.caches = append(w.caches, c)
	}
	return w
}

// read starts one read per Cache, by read, and returns the results channel,
// which gets each read's value or error text.
func (w *waiters) read(read func(c *cacheaside.Cache) ([]byte, error)) <-chan string {
	out := make(chan string, len(w.caches))
	for _, c := range w.caches {
		go func() {
			v, err := read(c)
			if err != nil {
				v = []byte(err.Error())
			}
			out <- string(v)
		}()
	}
	return out
}

// waitWaiting waits until every Cache has found the lease held and waits.
func (w *waiters) waitWaiting(t *testing.T) {
	t.Helper()
	waitFor(t, "every reader to wait for the lease", func() bool {
		return metric(t, w.reg, "invalidator_cacheaside_lease_waits_total") == float64(len(w.caches))
	})
}

// A holder that dies mid-load stops renewing its lease, which then lapses
// within LeaseTTL: one waiter takes it over and loads, the others get its
// value. While the holder lives, its lease outlasts LeaseTTL and nobody else
// loads.
func TestGetHolderKilledMidLoadIsTakenOver(t *testing.T) {
	t.Parallel()
	const key = "product:{7}:page"
	leaseTTL := cacheaside.DefaultLeaseTTL
	db := redistest.NewDB(t)
	ch := startChild(t, childSpec{Mode: "hold", URL: db.URL, Key: key})
	ch.expect(t, childLoading)
	marker, err := db.Client.Get(t.Context(), key).Result()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(marker, "l"), "the key holds the child's lease marker, not %q", marker)

	w := newWaiters(t, db.Client, 20, cacheaside.Config{})
	var takenOver atomic.Int64 // unix nanos of the first load here
	load := countingLoader(db.Client, 0)
	got := w.read(func(c *cacheaside.Cache) ([]byte, error) {
		return c.Get(context.Background(), key, func(ctx context.Context) ([]byte, error) {
			takenOver.CompareAndSwap(0, time.Now().UnixNano())
			return load(ctx)
		})
	})
	w.waitWaiting(t)

	// The holder lives: its lease outlasts LeaseTTL twice over, and nobody
	// else loads.
	moved := func() bool {
		n, _ := db.Client.Get(t.Context(), loadsKey).Int64()
		v, _ := db.Client.Get(t.Context(), key).Result()
		return n != 1 || v != marker
	}
	require.Never(t, moved, 2*leaseTTL, 10*time.Millisecond, "a live holder lost its lease, or another reader loaded")

	killed := time.Now()
	require.NoError(t, ch.cmd.Process.Kill())
	for range w.caches {
		require.Equal(t, herdValue, <-got)
	}
	after := time.Unix(0, takenOver.Load()).Sub(killed)
	t.Logf("a waiter took the lease over %s after the holder was killed (LeaseTTL %s)", after.Round(time.Millisecond), leaseTTL)
	require.EqualValues(t, 2, loads(t, db.Client), "the killed holder's load and one takeover")
	require.EqualValues(t, 1, metric(t, w.reg, "invalidator_cacheaside_lease_takeovers_total"))
	require.Less(t, after, leaseTTL+5*time.Second, "generous: the lease lapses within LeaseTTL of the kill")
	require.Equal(t, "v"+herdValue, db.Client.Get(t.Context(), key).Val(), "the takeover stored its value")
}

// An invalidation during a load that outlasts LeaseTTL (so the lease has
// been renewed) still refuses the holder's store, and the renewal does not
// bring the deleted lease back: one waiter takes a new lease and loads the
// new row, the others get it, and the old row is never stored.
func TestGetInvalidationDuringLongLoad(t *testing.T) {
	t.Parallel()
	leaseTTL := cacheaside.DefaultLeaseTTL
	b := setup(t, cacheaside.Config{})
	src := newSource("old")
	g := newGate(src)
	holder := make(chan string, 1)
	go func() {
		v, err := b.cache.Get(context.Background(), "k", g.load)
		if err != nil {
			v = []byte(err.Error())
		}
		holder <- string(v)
	}()
	require.Equal(t, "old", <-g.loaded)
	marker := b.rdb.Get(t.Context(), "k").Val()

	w := newWaiters(t, b.rdb, 20, cacheaside.Config{})
	got := w.read(func(c *cacheaside.Cache) ([]byte, error) { return c.Get(context.Background(), "k", src.load) })
	w.waitWaiting(t)
	require.Never(t, func() bool { return src.calls.Load() != 1 || b.rdb.Get(t.Context(), "k").Val() != marker },
		2*leaseTTL, 10*time.Millisecond, "a live holder lost its lease, or another reader loaded")
	require.GreaterOrEqual(t, metric(t, b.reg, "invalidator_cacheaside_lease_renewals_total"), 2.0)

	src.set("new")                                           // the writer commits
	require.NoError(t, b.rdb.Unlink(t.Context(), "k").Err()) // the invalidation
	for range w.caches {
		require.Equal(t, "new", <-got)
	}
	require.EqualValues(t, 2, src.calls.Load(), "one waiter loaded the new row, for all of them")
	require.EqualValues(t, 1, metric(t, w.reg, "invalidator_cacheaside_lease_takeovers_total"))
	// The holder is still loading, and its renewals keep ticking: none may
	// bring its lease back over the new value.
	require.Never(t, func() bool { return b.rdb.Get(t.Context(), "k").Val() != "vnew" }, leaseTTL, 10*time.Millisecond,
		"the holder's renewal brought its deleted lease back over the new value")

	close(g.release)
	require.Equal(t, "old", <-holder, "the holder's read began before the write")
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_stale_stores_prevented_total"))
	require.Equal(t, "vnew", b.rdb.Get(t.Context(), "k").Val(), "the old row was never stored")
}

// GetVersioned renews its lease the same way: waiters in other processes
// wait through a load longer than LeaseTTL, and a bump during it sends them
// to the new version, where one of them loads the new value.
func TestGetVersionedLongLoadAndBump(t *testing.T) {
	t.Parallel()
	leaseTTL := cacheaside.DefaultLeaseTTL
	b := setup(t, cacheaside.Config{})
	p := feedPolicy(t)
	fam, err := p.Family("feed")
	require.NoError(t, err)
	params := map[string]string{"user": "7"}
	bump(t, b.rdb, p, "feed", params)
	old := version(t, b.rdb, fam, params)
	oldKey, err := fam.DataKey(params, old)
	require.NoError(t, err)

	src := newSource("old")
	g := newGate(src)
	holder := make(chan string, 1)
	go func() {
		v, err := b.cache.GetVersioned(context.Background(), fam, params, g.load)
		if err != nil {
			v = []byte(err.Error())
		}
		holder <- string(v)
	}()
	require.Equal(t, "old", <-g.loaded)
	marker := b.rdb.Get(t.Context(), oldKey).Val()

	w := newWaiters(t, b.rdb, 20, cacheaside.Config{})
	got := w.read(func(c *cacheaside.Cache) ([]byte, error) {
		return c.GetVersioned(context.Background(), fam, params, src.load)
	})
	w.waitWaiting(t)
	require.Never(t, func() bool { return src.calls.Load() != 1 || b.rdb.Get(t.Context(), oldKey).Val() != marker },
		2*leaseTTL, 10*time.Millisecond, "a live holder lost its lease, or another reader loaded")

	src.set("new")
	bump(t, b.rdb, p, "feed", params)
	for range w.caches {
		require.Equal(t, "new", <-got)
	}
	require.EqualValues(t, 2, src.calls.Load(), "one waiter loaded at the new version, for all of them")
	close(g.release)
	require.Equal(t, "old", <-holder)
	require.Equal(t, "vold", b.rdb.Get(t.Context(), oldKey).Val(), "the old value went to the orphaned key")
	newKey, err := fam.DataKey(params, version(t, b.rdb, fam, params))
	require.NoError(t, err)
	require.Equal(t, "vnew", b.rdb.Get(t.Context(), newKey).Val())
}
