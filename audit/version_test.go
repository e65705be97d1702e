package audit_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/audit"
	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
)

func feedFamily(t *testing.T, prefix string) *keyspec.Family {
	t.Helper()
	f, err := keyspec.NewFamily("feed", prefix+"feed:{id}", keyspec.FamilyOptions{Strategy: keyspec.StrategyVersion,
		HashTag: "id", Params: map[string]keyspec.Param{"id": {Match: "[0-9]+"}}})
	require.NoError(t, err)
	return f
}

// plantVersioned caches m+n entities of a version family through
// cacheaside, as readers do, then makes n of them stale at their current
// version. Every fresh entity also keeps stale data under an older
// version, which no reader can reach and which must not count. It returns
// the source and the stale entities' data keys.
func plantVersioned(t *testing.T, rdb redis.UniversalClient, fam *keyspec.Family, m, n int) (*memSource, []string) {
	t.Helper()
	ctx := t.Context()
	src := &memSource{rows: map[string]string{}}
	cache, err := cacheaside.New(cacheaside.Config{Redis: rdb, TTL: time.Hour})
	require.NoError(t, err)
	var stale []string
	for i := range m + n {
		id := fmt.Sprint(i)
		params := map[string]string{"id": id}
		src.set(id, fmt.Sprintf(`{"id": %d, "items": %d}`, i, i))
		_, err := cache.GetVersioned(ctx, fam, params, func(ctx context.Context) ([]byte, error) {
			v, _, err := src.Fetch(ctx, params)
			return v, err
		})
		require.NoError(t, err)
		vkey, err := fam.VersionKey(params)
		require.NoError(t, err)
		ver, err := rdb.Get(ctx, vkey).Int64()
		require.NoError(t, err)
		old := []byte(fmt.Sprintf(`{"id": %d, "items": -1}`, i))
		if i%((m+n)/n) == 0 && len(stale) < n {
			// A write path that changed the row and forgot the bump.
			key, err := fam.DataKey(params, ver)
			require.NoError(t, err)
			require.NoError(t, rdb.Set(ctx, key, cacheaside.EncodeValue(old), 0).Err())
			stale = append(stale, key)
			continue
		}
		key, err := fam.DataKey(params, ver-1)
		require.NoError(t, err)
		require.NoError(t, rdb.Set(ctx, key, cacheaside.EncodeValue(old), 0).Err())
	}
	require.Len(t, stale, n)
	slices.Sort(stale)
	return src, stale
}

func requireVersionedStaleFound(t *testing.T, rdb redis.UniversalClient, prefix string) {
	const m, n = 150, 5
	fam := feedFamily(t, prefix)
	src, stale := plantVersioned(t, rdb, fam, m, n)
	a := newAuditor(t, rdb, audit.Config{Sample: 1000})
	rep, err := a.Audit(t.Context(), audit.Check{Family: fam, Source: src, Compare: audit.CompareJSON})
	require.NoError(t, err)
	require.Equal(t, m+n, rep.Sampled, "one per entity: old versions' data keys are not sampled")
	require.Equal(t, n, rep.Inconsistent)
	require.Equal(t, m, rep.Consistent)
	require.Zero(t, rep.InFlight+rep.Unverifiable)
	require.Equal(t, stale, rep.Stale)
	require.Len(t, rep.StaleParams, n)
	for i, p := range rep.StaleParams {
		key, err := fam.DataKey(p, mustVersion(t, rdb, fam, p))
		require.NoError(t, err)
		require.Equal(t, stale[i], key)
	}
	require.Empty(t, rep.Note)
}

func mustVersion(t *testing.T, rdb redis.UniversalClient, fam *keyspec.Family, p map[string]string) int64 {
	t.Helper()
	vkey, err := fam.VersionKey(p)
	require.NoError(t, err)
	s, err := rdb.Get(t.Context(), vkey).Result()
	require.NoError(t, err)
	v, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err)
	return v
}

func TestAudit_VersionFamilyComparesTheCurrentVersionOnly(t *testing.T) {
	t.Parallel()
	requireVersionedStaleFound(t, redistest.Client(t), "")
}

func TestAudit_VersionFamilyOnACluster(t *testing.T) {
	t.Parallel()
	requireVersionedStaleFound(t, redistest.Cluster(t), redistest.Prefix(t)+":")
}

// A bump between the first look and the re-check is an invalidation that
// landed: in flight, not inconsistent.
func TestAudit_VersionBumpBeforeTheRecheckIsInFlight(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	fam := feedFamily(t, "")
	src, stale := plantVersioned(t, rdb, fam, 10, 1)
	bumped := false
	hook := audit.SourceFunc(func(ctx context.Context, p map[string]string) ([]byte, bool, error) {
		if key, _ := fam.DataKey(p, mustVersion(t, rdb, fam, p)); key == stale[0] && !bumped {
			bumped = true
			vkey, err := fam.VersionKey(p)
			require.NoError(t, err)
			require.NoError(t, rdb.Incr(ctx, vkey).Err())
		}
		return src.Fetch(ctx, p)
	})
	a := newAuditor(t, rdb, audit.Config{Sample: 1000, Concurrency: 1})
	rep, err := a.Audit(t.Context(), audit.Check{Family: fam, Source: hook, Compare: audit.CompareJSON})
	require.NoError(t, err)
	require.True(t, bumped)
	require.Zero(t, rep.Inconsistent)
	require.Equal(t, 1, rep.InFlight)
	require.Equal(t, 10, rep.Consistent)
}
