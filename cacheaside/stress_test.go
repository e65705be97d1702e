package cacheaside_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/tasks"
	"github.com/invalidator/invalidator/worker"
)

// stressDuration is how long each stress test runs.
func stressDuration() time.Duration {
	if testing.Short() {
		return 2 * time.Second
	}
	return 5 * time.Second
}

// history records a stress test's invalidations and reads, to find reads
// that began after an invalidation returned and still saw an older
// version than the one it made current.
type history struct {
	mu    sync.Mutex
	invs  []event // guarded by mu
	reads []event // guarded by mu
}

// event is an invalidation (when it returned, the version it made current)
// or a read (when it began, the version it returned).
type event struct {
	at  time.Time
	ver int64
}

func (h *history) invalidated(ver int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.invs = append(h.invs, event{time.Now(), ver})
}

func (h *history) read(began time.Time, ver int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reads = append(h.reads, event{began, ver})
}

// stale returns the stale reads, each with how long after the invalidation
// it missed it began.
func (h *history) stale() (stale []time.Duration, reads, invs int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	slices.SortFunc(h.invs, func(a, b event) int { return a.at.Compare(b.at) })
	// need[i] is the newest version made current by invs[:i+1].
	need := make([]int64, len(h.invs))
	for i, e := range h.invs {
		need[i] = e.ver
		if i > 0 {
			need[i] = max(need[i], need[i-1])
		}
	}
	for _, r := range h.reads {
		i, _ := slices.BinarySearchFunc(h.invs, r.at, func(e event, t time.Time) int { return e.at.Compare(t) })
		if i > 0 && r.ver < need[i-1] {
			stale = append(stale, r.at.Sub(h.invs[i-1].at))
		}
	}
	return stale, len(h.reads), len(h.invs)
}

// pauseNowAndThen stops srv for up to 120ms at random moments until stop,
// so leases lapse and replies come late.
func pauseNowAndThen(wg *sync.WaitGroup, srv *redistest.Server, stop time.Time) {
	wg.Go(func() {
		for time.Now().Before(stop) {
			time.Sleep(rand.N(500 * time.Millisecond))
			srv.Pause()
			time.Sleep(rand.N(120 * time.Millisecond))
			srv.Resume()
		}
	})
}

// Readers share four Caches, so many reads join another's flight; a writer
// updates the source and UNLINKs the key; leases are short and lapse, slow
// loads need renewals, and Redis pauses now and then. No read that begins
// after an invalidation returned may see a value older than that write.
// (Before reads that joined a flight after its final request was sent took
// its value: 15 stale reads of 9,270 in 20s, up to 0.3ms after the
// invalidation.)
func TestGetStressNoStaleRead(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ctx := t.Context()
	const key = "stress:k"
	var src atomic.Int64
	var h history
	caches := make([]*cacheaside.Cache, 4)
	for i := range caches {
		caches[i], _ = newCache(t, srv.NewClient(), cacheaside.Config{TTL: time.Minute, LeaseTTL: 30 * time.Millisecond,
			MaxWait: 3 * time.Second, LoadTimeout: 2 * time.Second})
	}
	load := func(context.Context) ([]byte, error) {
		v := src.Load()
		time.Sleep(rand.N(90 * time.Millisecond))
		return []byte(strconv.FormatInt(v, 10)), nil
	}
	stop := time.Now().Add(stressDuration())
	var wg sync.WaitGroup
	wc := srv.NewClient()
	wg.Go(func() {
		for time.Now().Before(stop) {
			v := src.Add(1)
			for wc.Unlink(ctx, key).Err() != nil { // Redis paused: retry, as the worker would
				time.Sleep(time.Millisecond)
			}
			h.invalidated(v)
			time.Sleep(rand.N(40 * time.Millisecond))
		}
	})
	pauseNowAndThen(&wg, srv, stop)
	var errs atomic.Int64
	for i := range 24 {
		c := caches[i%len(caches)]
		wg.Go(func() {
			for time.Now().Before(stop) {
				began := time.Now()
				v, err := c.Get(ctx, key, load)
				if err != nil {
					errs.Add(1)
					continue
				}
				n, err := strconv.ParseInt(string(v), 10, 64)
				if err != nil {
					errs.Add(1)
					continue
				}
				h.read(began, n)
				time.Sleep(rand.N(5 * time.Millisecond))
			}
		})
	}
	wg.Wait()
	stale, reads, invs := h.stale()
	t.Logf("%d reads, %d invalidations, %d errors, %d stale reads %v", reads, invs, errs.Load(), len(stale), stale)
	require.Empty(t, stale, "reads that began after an invalidation returned and saw an older value (how long after)")
	require.Positive(t, reads)

	v, err := caches[0].Get(ctx, key, load)
	require.NoError(t, err)
	require.Equal(t, strconv.FormatInt(src.Load(), 10), string(v), "once quiet, the cache holds the latest value")
}

// The same for a version family: two writers bump one entity through the
// worker's handler, its version key is evicted at random, each reader has
// a Cache of its own, loads are slow and leases short, Redis pauses now and
// then. A read that begins after a bump returned reflects that write.
func TestGetVersionedStressNoStaleRead(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ctx := t.Context()
	fam, err := feedPolicy(t).Family("feed")
	require.NoError(t, err)
	params := map[string]string{"user": "1"}
	vkey, err := fam.VersionKey(params)
	require.NoError(t, err)
	w, err := worker.New(worker.Config{Queue: srv.NewClient(), Policy: feedPolicy(t), Logger: discard()})
	require.NoError(t, err)
	payload, err := tasks.Marshal(tasks.BumpVersion{Family: "feed", Params: params, EnqueuedAt: time.Now()})
	require.NoError(t, err)
	var gen atomic.Int64
	var h history
	stop := time.Now().Add(stressDuration())
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				g := gen.Add(1)
				for w.ProcessTask(ctx, asynq.NewTask(tasks.KindBumpVersion, payload)) != nil {
					time.Sleep(time.Millisecond) // Redis paused: retry, as asynq would
				}
				h.invalidated(g)
				time.Sleep(rand.N(10 * time.Millisecond))
			}
		})
	}
	evict := srv.NewClient()
	wg.Go(func() {
		for time.Now().Before(stop) {
			time.Sleep(rand.N(50 * time.Millisecond))
			evict.Del(ctx, vkey)
		}
	})
	pauseNowAndThen(&wg, srv, stop)
	var errs atomic.Int64
	for range 16 {
		c, _ := newCache(t, srv.NewClient(), cacheaside.Config{LeaseTTL: 30 * time.Millisecond, MaxWait: 3 * time.Second, LoadTimeout: 2 * time.Second})
		wg.Go(func() {
			for time.Now().Before(stop) {
				began := time.Now()
				v, err := c.GetVersioned(ctx, fam, params, func(context.Context) ([]byte, error) {
					g := gen.Load()
					time.Sleep(rand.N(60 * time.Millisecond))
					return []byte(strconv.FormatInt(g, 10)), nil
				})
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						errs.Add(1)
					}
					continue
				}
				n, err := strconv.ParseInt(string(v), 10, 64)
				if err != nil {
					errs.Add(1)
					continue
				}
				h.read(began, n)
			}
		})
	}
	wg.Wait()
	stale, reads, invs := h.stale()
	t.Logf("%d reads, %d bumps, %d errors, %d stale reads %v", reads, invs, errs.Load(), len(stale), stale)
	require.Empty(t, stale, "reads that began after a bump returned and saw an older value (how long after)")
	require.Positive(t, reads)
}
