package cacheaside_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
	"github.com/invalidator/invalidator/worker"
)

// feedPolicy declares a version family with a hash tag and one without.
func feedPolicy(t *testing.T) *keyspec.Policy {
	t.Helper()
	p, err := keyspec.Parse("policy.yaml", []byte(`
version: 1
classes:
  feeds: {ttl: 1m, jitter: 0.1}
families:
  feed:
    template: "feed:{user}:page"
    class: feeds
    strategy: version
    hash_tag: user
  catalog:
    template: "catalog:{shop}"
    class: feeds
    strategy: version
`))
	require.NoError(t, err)
	return p
}

// bump advances the version through the worker's own bump.
func bump(t *testing.T, rdb redis.UniversalClient, p *keyspec.Policy, family string, params map[string]string) {
	t.Helper()
	w, err := worker.New(worker.Config{Queue: rdb, Policy: p, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	payload, err := tasks.Marshal(tasks.BumpVersion{Family: family, Params: params, EnqueuedAt: time.Now()})
	require.NoError(t, err)
	require.NoError(t, w.ProcessTask(t.Context(), asynq.NewTask(tasks.KindBumpVersion, payload)))
}

// version reads a family instance's version key.
func version(t *testing.T, rdb redis.UniversalClient, fam *keyspec.Family, params map[string]string) int64 {
	t.Helper()
	vkey, err := fam.VersionKey(params)
	require.NoError(t, err)
	v, err := rdb.Get(t.Context(), vkey).Int64()
	require.NoError(t, err)
	return v
}

func TestGetVersionedCreatesVersionKey(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{})
	fam, err := feedPolicy(t).Family("feed")
	require.NoError(t, err)
	params := map[string]string{"user": "42"}
	src := newSource("page 1")

	before, err := b.rdb.Time(t.Context()).Result()
	require.NoError(t, err)
	v, err := b.cache.GetVersioned(t.Context(), fam, params, src.load)
	require.NoError(t, err)
	require.Equal(t, "page 1", string(v))
	after, err := b.rdb.Time(t.Context()).Result()
	require.NoError(t, err)

	ver := version(t, b.rdb, fam, params)
	margin := keyspec.VersionRestartMargin.Microseconds()
	require.GreaterOrEqual(t, ver, before.UnixMicro()+margin, "a missing version key starts at Redis TIME in µs plus the restart margin")
	require.LessOrEqual(t, ver, after.UnixMicro()+margin)
	vttl, err := b.rdb.PTTL(t.Context(), "feed:{42}:page#ver").Result()
	require.NoError(t, err)
	require.True(t, vttl > 2*time.Minute, "version key TTL %s, want the worker's 2 × longest data TTL", vttl)

	dkey, err := fam.DataKey(params, ver)
	require.NoError(t, err)
	raw, err := b.rdb.Get(t.Context(), dkey).Result()
	require.NoError(t, err)
	require.Equal(t, "vpage 1", raw)
	dttl, err := b.rdb.PTTL(t.Context(), dkey).Result()
	require.NoError(t, err)
	require.True(t, dttl > 50*time.Second && dttl <= 66*time.Second, "data TTL %s, want the class's minute ±10%%", dttl)

	v, err = b.cache.GetVersioned(t.Context(), fam, params, src.load)
	require.NoError(t, err)
	require.Equal(t, "page 1", string(v))
	require.EqualValues(t, 1, src.calls.Load())
	require.Equal(t, ver, version(t, b.rdb, fam, params), "a read never moves the version")
}

// Acceptance: a version bump during a slow load leaves the slow loader's
// value on the old version's key, and the next read loads fresh.
func TestGetVersionedBumpDuringSlowLoad(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{})
	p := feedPolicy(t)
	for _, name := range []string{"feed", "catalog"} {
		fam, err := p.Family(name)
		require.NoError(t, err)
		params := map[string]string{"user": "7"}
		if name == "catalog" {
			params = map[string]string{"shop": "7"}
		}
		bump(t, b.rdb, p, name, params)
		old := version(t, b.rdb, fam, params)

		src := newSource("old feed")
		g := newGate(src)
		got := make(chan string, 1)
		go func() {
			v, err := b.cache.GetVersioned(context.Background(), fam, params, g.load)
			if err != nil {
				v = []byte(err.Error())
			}
			got <- string(v)
		}()
		require.Equal(t, "old feed", <-g.loaded)
		src.set("new feed")
		bump(t, b.rdb, p, name, params)
		close(g.release)
		require.Equal(t, "old feed", <-got)

		oldKey, err := fam.DataKey(params, old)
		require.NoError(t, err)
		raw, err := b.rdb.Get(t.Context(), oldKey).Result()
		require.NoError(t, err)
		require.Equal(t, "vold feed", raw, "%s: the slow value lands on the orphaned key", name)

		v, err := b.cache.GetVersioned(t.Context(), fam, params, src.load)
		require.NoError(t, err)
		require.Equal(t, "new feed", string(v), name)
		newKey, err := fam.DataKey(params, version(t, b.rdb, fam, params))
		require.NoError(t, err)
		require.NotEqual(t, oldKey, newKey)
		require.Equal(t, "vnew feed", b.rdb.Get(t.Context(), newKey).Val())
	}
}

func TestGetVersionedLeaseAndNegative(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{NegativeTTL: time.Minute, MaxWait: time.Minute})
	other, otherReg := newCache(t, b.rdb, cacheaside.Config{NegativeTTL: time.Minute, MaxWait: time.Minute})
	fam, err := feedPolicy(t).Family("feed")
	require.NoError(t, err)
	params := map[string]string{"user": "1"}

	// A second process waits for the first one's load.
	src := newSource("v1")
	g := newGate(src)
	first := make(chan error, 1)
	go func() {
		_, err := b.cache.GetVersioned(context.Background(), fam, params, g.load)
		first <- err
	}()
	<-g.loaded
	second := make(chan string, 1)
	go func() {
		v, _ := other.GetVersioned(context.Background(), fam, params, src.load)
		second <- string(v)
	}()
	waitFor(t, "the second reader to wait", func() bool { return metric(t, otherReg, "invalidator_cacheaside_lease_waits_total") == 1 })
	close(g.release)
	require.NoError(t, <-first)
	require.Equal(t, "v1", <-second)
	require.EqualValues(t, 1, src.calls.Load())

	// Negative entries live at the data key too.
	missing := map[string]string{"user": "2"}
	for range 2 {
		_, err = b.cache.GetVersioned(t.Context(), fam, missing, func(context.Context) ([]byte, error) {
			return nil, cacheaside.ErrNotFound
		})
		require.ErrorIs(t, err, cacheaside.ErrNotFound)
	}
	require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_hits_total"))
}

func TestGetVersionedErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{})
	p := feedPolicy(t)
	fam, err := p.Family("feed")
	require.NoError(t, err)
	src := newSource("x")

	require.NoError(t, b.rdb.Set(t.Context(), "feed:{3}:page#ver", "not a number", 0).Err())
	_, err = b.cache.GetVersioned(t.Context(), fam, map[string]string{"user": "3"}, src.load)
	require.ErrorContains(t, err, `version key "feed:{3}:page#ver"`)
	require.ErrorContains(t, err, "decimal version")

	require.NoError(t, b.rdb.Set(t.Context(), "feed:{4}:page#ver", "0"+strconv.Itoa(17), 0).Err())
	_, err = b.cache.GetVersioned(t.Context(), fam, map[string]string{"user": "4"}, src.load)
	require.ErrorContains(t, err, "not a version the worker wrote")

	_, err = b.cache.GetVersioned(t.Context(), fam, map[string]string{}, src.load)
	require.ErrorIs(t, err, keyspec.ErrMissingParam)

	del, err := keyspec.NewFamily("price", "price:{sku}", keyspec.FamilyOptions{})
	require.NoError(t, err)
	_, err = b.cache.GetVersioned(t.Context(), del, map[string]string{"sku": "1"}, src.load)
	require.ErrorIs(t, err, keyspec.ErrNotVersioned)
	require.Zero(t, src.calls.Load())
}
