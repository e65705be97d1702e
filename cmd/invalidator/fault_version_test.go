package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
)

// faultVersionPolicy has one version family, whose data lives a minute.
const faultVersionPolicy = `version: 1
classes:
  standard: {ttl: 1m, max_retry: 3, backoff_base: 10ms, backoff_max: 50ms}
families:
  feed:
    template: "feed:{user}"
    class: standard
    strategy: version
    hash_tag: user
`

const faultVersionQueue = "invalidator-standard"

// versionFault is a worker process on a queue Redis and a cache Redis of
// the test's own (so the cache can be made to evict), with writers and
// readers in the test process.
type versionFault struct {
	queue, cache *redis.Client
	client       *enqueue.Client
	reader       *cacheaside.Cache
	fam          *keyspec.Family
	insp         *asynq.Inspector
	worker       *proc
}

// Fault suite: eviction of version keys under a bump burst. Writers enqueue
// 400 bumps of one entity of a version family, which a worker process then
// applies as fast as it can, readers read the entity through
// cacheaside.GetVersioned meanwhile, and the version key is evicted: by DEL after the queue drained, by DEL over and
// over during the burst, and by a cache Redis at its maxmemory evicting
// keys at random. After the queue drains every read must return data at
// least as new as the last write, and so must every read after each of a
// run of further writes (an eviction that restarted the version below
// versions already handed out shows there, as the bumps walk up through
// them). Nothing may land in the dead letter.
func TestFaultVersionEvictionUnderBumpBurst(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin, err := plainBinary()
	require.NoError(t, err)
	qsrv, csrv := redistest.StartServer(t), redistest.StartServer(t)
	policy, err := keyspec.Parse("policy.yaml", []byte(faultVersionPolicy))
	require.NoError(t, err)
	fam, err := policy.Family("feed")
	require.NoError(t, err)
	f := &versionFault{queue: qsrv.NewClient(), cache: csrv.NewClient(), fam: fam}
	f.insp = asynq.NewInspectorFromRedisClient(f.queue)
	f.client, err = enqueue.New(f.queue, enqueue.Config{Policy: policy})
	require.NoError(t, err)
	f.reader, err = cacheaside.New(cacheaside.Config{Redis: f.cache, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)

	env := append(os.Environ(), envRedisURL+"="+qsrv.URL(), envCacheRedisURL+"="+csrv.URL(),
		envPolicy+"="+writePolicy(t, faultVersionPolicy))
	f.worker = startProc(t, bin, env, "worker", "--poll-interval", "1ms", "--concurrency", "32")
	start := time.Now()

	t.Run("DEL after the queue drained", func(t *testing.T) {
		f.round(t, "1", nil, func(vkey string) {
			require.NoError(t, f.cache.Del(t.Context(), vkey).Err())
		})
	})
	t.Run("DEL during the burst", func(t *testing.T) {
		f.round(t, "2", func(ctx context.Context, vkey string) {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					if err := f.cache.Del(ctx, vkey).Err(); err != nil && ctx.Err() == nil {
						t.Error(err)
						return
					}
				}
			}
		}, func(vkey string) {
			require.NoError(t, f.cache.Del(t.Context(), vkey).Err())
		})
	})
	t.Run("maxmemory allkeys-random", func(t *testing.T) {
		f.evictingRound(t, "3")
	})

	info, err := f.insp.GetQueueInfo(faultVersionQueue)
	require.NoError(t, err)
	require.Zero(t, info.Archived, "dead-lettered bumps; worker logs:\n%s", f.worker.logs)
	require.NotContains(t, f.worker.logs.String(), "ahead of the cache Redis clock", "no version may run ahead of the clock")
	t.Logf("fault suite: version eviction under a bump burst took %s", time.Since(start).Round(time.Millisecond))
}

// round runs one scenario on entity user: a burst of bumps with readers
// (and during, if not nil, running while they do), then, once the queue has
// drained, after (the eviction) and the checks.
func (f *versionFault) round(t *testing.T, user string, during func(ctx context.Context, vkey string), after func(vkey string)) {
	params := map[string]string{"user": user}
	vkey, err := f.fam.VersionKey(params)
	require.NoError(t, err)
	var gen atomic.Int64 // the source of truth: the number of the last write
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var bg sync.WaitGroup
	f.readers(ctx, t, &bg, params, &gen)
	if during != nil {
		bg.Go(func() { during(ctx, vkey) })
	}
	f.burst(t, params, &gen)
	began := time.Now()
	f.waitDrained(t)
	f.logLead(t, vkey, time.Since(began))
	stop()
	bg.Wait()
	after(vkey)
	f.check(t, params, &gen)
}

// evictingRound is round with a cache Redis that evicts for real: capped
// at maxmemory with allkeys-random, and filled until it has evicted the
// version key during the burst and again after the queue drained. A random
// policy evicts the version key while its old data is still cached, the
// case that matters; an LRU policy evicts old data keys first, since every
// read touches the version key.
func (f *versionFault) evictingRound(t *testing.T, user string) {
	ctx := t.Context()
	params := map[string]string{"user": user}
	vkey, err := f.fam.VersionKey(params)
	require.NoError(t, err)
	require.NoError(t, f.cache.ConfigSet(ctx, "notify-keyspace-events", "Ee").Err())
	evicted := f.cache.Subscribe(ctx, "__keyevent@0__:evicted")
	defer evicted.Close()
	_, err = evicted.Receive(ctx) // the subscription is live
	require.NoError(t, err)
	var vkeyEvictions atomic.Int64
	go func() {
		for m := range evicted.Channel() {
			if m.Payload == vkey {
				vkeyEvictions.Add(1)
			}
		}
	}()
	mem := infoInt(t, f.cache, "memory", "used_memory")
	require.NoError(t, f.cache.ConfigSet(ctx, "maxmemory-policy", "allkeys-random").Err())
	require.NoError(t, f.cache.ConfigSet(ctx, "maxmemory", strconv.FormatInt(mem+1<<20, 10)).Err())
	t.Cleanup(func() { _ = f.cache.ConfigSet(context.Background(), "maxmemory", "0").Err() })

	fillCtx, stopFill := context.WithCancel(ctx)
	defer stopFill()
	var fill sync.WaitGroup
	fill.Go(func() { f.fill(fillCtx, t) })

	var gen atomic.Int64
	rctx, stopReaders := context.WithCancel(ctx)
	var readers sync.WaitGroup
	f.readers(rctx, t, &readers, params, &gen)
	f.burst(t, params, &gen)
	began := time.Now()
	f.waitDrained(t)
	f.logLead(t, vkey, time.Since(began))
	stopReaders()
	readers.Wait()
	during := vkeyEvictions.Load()
	require.Eventually(t, func() bool {
		if vkeyEvictions.Load() > during {
			return true
		}
		// Evicted just before the readers stopped, it must exist to go again.
		if f.cache.Exists(ctx, vkey).Val() == 0 {
			if _, err := f.reader.GetVersioned(ctx, f.fam, params, loadGen(&gen)); err != nil {
				t.Error(err)
			}
		}
		return false
	}, 20*time.Second, time.Millisecond, "the cache never evicted the version key after the queue drained")
	f.check(t, params, &gen)
	stopFill()
	fill.Wait()
	require.Positive(t, during, "the cache never evicted the version key during the burst")
	t.Logf("the cache evicted %d keys, the version key %d times during the burst and %d after",
		infoInt(t, f.cache, "stats", "evicted_keys"), during, vkeyEvictions.Load()-during)
}

// logLead logs how far the version is ahead of the cache Redis's clock
// after a burst of d, in the version's unit.
func (f *versionFault) logLead(t *testing.T, vkey string, d time.Duration) {
	v, err := f.cache.Get(t.Context(), vkey).Int64()
	if errors.Is(err, redis.Nil) {
		t.Logf("400 bumps applied in %s; the version key is missing", d.Round(time.Millisecond))
		return
	}
	require.NoError(t, err)
	now, err := f.cache.Time(t.Context()).Result()
	require.NoError(t, err)
	t.Logf("400 bumps applied in %s; version %d, Redis TIME %d µs", d.Round(time.Millisecond), v, now.UnixMicro())
}

// burst enqueues 8 × 50 bumps of one entity from 8 writers, each write
// counted in gen before its bump is enqueued, onto the paused queue, then
// lets the worker drain them all at once: the fastest bump rate one entity
// can get (a backlog after a worker outage looks the same).
func (f *versionFault) burst(t *testing.T, params map[string]string, gen *atomic.Int64) {
	require.NoError(t, f.insp.PauseQueue(faultVersionQueue))
	defer func() { require.NoError(t, f.insp.UnpauseQueue(faultVersionQueue)) }()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				gen.Add(1)
				if _, err := f.client.BumpVersion(t.Context(), "feed", params); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// readers starts 4 readers of the entity that read until ctx ends, storing
// the write number current when they load. Each reads once a millisecond at
// most, leaving the worker CPU to bump at its fastest.
func (f *versionFault) readers(ctx context.Context, t *testing.T, wg *sync.WaitGroup, params map[string]string, gen *atomic.Int64) {
	for range 4 {
		wg.Go(func() {
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if _, err := f.reader.GetVersioned(ctx, f.fam, params, loadGen(gen)); err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
			}
		})
	}
}

// check reads the entity 20 times, then writes and reads it 30 times, each
// write applied before its read: every read must return the last write.
func (f *versionFault) check(t *testing.T, params map[string]string, gen *atomic.Int64) {
	var stale []string
	read := func(phase string) {
		v, err := f.reader.GetVersioned(t.Context(), f.fam, params, loadGen(gen))
		require.NoError(t, err)
		n, err := strconv.ParseInt(string(v), 10, 64)
		require.NoError(t, err)
		if want := gen.Load(); n < want {
			stale = append(stale, phase+": read write "+strconv.FormatInt(n, 10)+", want "+strconv.FormatInt(want, 10))
		}
	}
	for range 20 {
		read("after the burst")
	}
	for i := range 30 {
		gen.Add(1)
		_, err := f.client.BumpVersion(t.Context(), "feed", params)
		require.NoError(t, err)
		f.waitDrained(t)
		read("after write " + strconv.Itoa(i+1) + " of the run after the eviction")
	}
	require.Empty(t, stale, "%d of 50 reads returned data older than the last applied write", len(stale))
}

// waitDrained waits until the queue has no pending, active, scheduled or
// retrying task: every bump enqueued before has been applied.
func (f *versionFault) waitDrained(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		info, err := f.insp.GetQueueInfo(faultVersionQueue)
		return err == nil && info.Pending+info.Active+info.Scheduled+info.Retry == 0
	}, 20*time.Second, time.Millisecond, "the queue did not drain; worker logs:\n%s", f.worker.logs)
}

// fill writes 32 KiB filler keys, one a millisecond, until ctx ends.
func (f *versionFault) fill(ctx context.Context, t *testing.T) {
	val := strings.Repeat("x", 32<<10)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := f.cache.Set(ctx, "filler:"+strconv.Itoa(i), val, 0).Err(); err != nil && ctx.Err() == nil {
			t.Error(err)
			return
		}
	}
}

// loadGen is a loader that returns the current write number.
func loadGen(gen *atomic.Int64) cacheaside.Loader {
	return func(context.Context) ([]byte, error) { return []byte(strconv.FormatInt(gen.Load(), 10)), nil }
}

// infoInt reads an integer field of an INFO section.
func infoInt(t *testing.T, rdb *redis.Client, section, field string) int64 {
	t.Helper()
	info, err := rdb.Info(t.Context(), section).Result()
	require.NoError(t, err)
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("INFO %s has no %s", section, field)
	return 0
}
