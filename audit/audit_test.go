package audit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/audit"
	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
)

// memSource is a source of truth in memory: id -> value.
type memSource struct {
	mu   sync.Mutex // guards rows
	rows map[string]string
}

func (s *memSource) Fetch(_ context.Context, p map[string]string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.rows[p["id"]]
	return []byte(v), ok, nil
}

func (s *memSource) set(id, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows[id] = v
}

func productFamily(t *testing.T, prefix string) *keyspec.Family {
	t.Helper()
	f, err := keyspec.NewFamily("product", prefix+"product:{id}", keyspec.FamilyOptions{
		HashTag: "id", Params: map[string]keyspec.Param{"id": {Match: "[0-9]+"}}})
	require.NoError(t, err)
	return f
}

// plant writes m fresh and n stale product entries, plus entries an audit
// must skip, and returns the source and the stale keys.
func plant(t *testing.T, rdb redis.UniversalClient, fam *keyspec.Family, m, n int) (*memSource, []string) {
	t.Helper()
	ctx := t.Context()
	src := &memSource{rows: map[string]string{}}
	var stale []string
	for i := range m + n {
		id := fmt.Sprint(i)
		key, err := fam.Key(map[string]string{"id": id})
		require.NoError(t, err)
		row := fmt.Sprintf(`{"id": %d, "price": %d}`, i, 100+i)
		src.set(id, row)
		cached := row
		if i%((m+n)/n) == 0 && len(stale) < n {
			cached = fmt.Sprintf(`{"id": %d, "price": %d}`, i, 1)
			stale = append(stale, key)
		}
		require.NoError(t, rdb.Set(ctx, key, cacheaside.EncodeValue([]byte(cached)), 0).Err())
	}
	require.Len(t, stale, n)
	// Not data, or not the family's: none may count.
	base, err := fam.Key(map[string]string{"id": "900001"})
	require.NoError(t, err)
	require.NoError(t, rdb.Set(ctx, base, "lQ2XJ6V3R4KZ7M5N2B8C4D6F8H", 0).Err()) // a lease marker
	neg, err := fam.Key(map[string]string{"id": "900002"})
	require.NoError(t, err)
	require.NoError(t, rdb.Set(ctx, neg, "n", 0).Err()) // a negative entry
	require.NoError(t, rdb.Set(ctx, base+":price", cacheaside.EncodeValue([]byte("x")), 0).Err())
	return src, stale
}

func newAuditor(t *testing.T, rdb redis.UniversalClient, cfg audit.Config) *audit.Auditor {
	t.Helper()
	if cfg.RecheckAfter == 0 {
		cfg.RecheckAfter = 20 * time.Millisecond
	}
	a, err := audit.New(rdb, cfg)
	require.NoError(t, err)
	return a
}

func requirePlantedFound(t *testing.T, rdb redis.UniversalClient, prefix string) {
	const m, n = 300, 7
	fam := productFamily(t, prefix)
	src, stale := plant(t, rdb, fam, m, n)
	a := newAuditor(t, rdb, audit.Config{Sample: 1000})
	rep, err := a.Audit(t.Context(), audit.Check{Family: fam, Source: src, Compare: audit.CompareJSON})
	require.NoError(t, err)
	require.Equal(t, m+n, rep.Sampled, "every fresh and stale entry; markers, negative entries and other families skipped")
	require.Equal(t, n, rep.Inconsistent)
	require.Equal(t, m, rep.Consistent)
	require.Zero(t, rep.InFlight+rep.Unverifiable)
	slices.Sort(stale)
	require.Equal(t, stale, rep.Stale)
	require.Len(t, rep.Examples, 5)
	for _, ex := range rep.Examples {
		require.Equal(t, audit.Inconsistent, ex.Outcome)
		require.Nil(t, ex.Cached, "no values unless asked")
	}
	require.NotNil(t, rep.Nines)
	require.False(t, rep.NinesAtLeast)
	require.InDelta(t, 1.64, *rep.Nines, 0.01) // -log10(7/307)
}

func TestAudit_FindsExactlyThePlantedStaleEntries(t *testing.T) {
	t.Parallel()
	requirePlantedFound(t, redistest.Client(t), "")
}

func TestAudit_FindsExactlyThePlantedStaleEntriesOnACluster(t *testing.T) {
	t.Parallel()
	requirePlantedFound(t, redistest.Cluster(t), redistest.Prefix(t)+":")
}

func TestAudit_SampleCapsTheKeysCompared(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	fam := productFamily(t, "")
	src, _ := plant(t, rdb, fam, 500, 5)
	a := newAuditor(t, rdb, audit.Config{Sample: 50, ScanCount: 10})
	rep, err := a.Audit(t.Context(), audit.Check{Family: fam, Source: src})
	require.NoError(t, err)
	// plant adds a lease marker and a negative entry among the family's
	// keys: one the sample takes is skipped, not compared.
	require.Equal(t, 50, rep.Sampled+rep.Skipped)
	require.LessOrEqual(t, rep.Skipped, 2)
}

func TestAudit_NoInconsistencyGivesALowerBoundOfNines(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	fam := productFamily(t, "")
	src, stale := plant(t, rdb, fam, 99, 1)
	require.NoError(t, rdb.Del(t.Context(), stale...).Err())
	a := newAuditor(t, rdb, audit.Config{Sample: 1000})
	rep, err := a.Audit(t.Context(), audit.Check{Family: fam, Source: src, Compare: audit.CompareJSON})
	require.NoError(t, err)
	require.Equal(t, 99, rep.Consistent)
	require.True(t, rep.NinesAtLeast)
	require.InDelta(t, 2.0, *rep.Nines, 0.01)
}

func TestAudit_FailingAndSlowSourcesAreUnverifiable(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	fam := productFamily(t, "")
	src, _ := plant(t, rdb, fam, 20, 2)
	a := newAuditor(t, rdb, audit.Config{Sample: 1000, SourceTimeout: 50 * time.Millisecond})

	failing := audit.SourceFunc(func(context.Context, map[string]string) ([]byte, bool, error) {
		return nil, false, errors.New("connection refused")
	})
	rep, err := a.Audit(t.Context(), audit.Check{Family: fam, Source: failing})
	require.NoError(t, err)
	require.Equal(t, 22, rep.Unverifiable)
	require.Zero(t, rep.Consistent+rep.Inconsistent)
	require.Nil(t, rep.Nines, "nothing verifiable")
	require.Contains(t, rep.Examples[0].Error, "connection refused")

	slow := audit.SourceFunc(func(ctx context.Context, p map[string]string) ([]byte, bool, error) {
		<-ctx.Done() // a source that hangs until the timeout
		return src.Fetch(context.Background(), p)
	})
	rep, err = a.Audit(t.Context(), audit.Check{Family: fam, Source: slow})
	require.NoError(t, err)
	require.Equal(t, 22, rep.Unverifiable, "a late answer is not trusted")
}

func TestAudit_ChangeBeforeTheRecheckIsInFlight(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	fam := productFamily(t, "")
	src, stale := plant(t, rdb, fam, 10, 2)
	// The first stale key is invalidated, the second rewritten with the
	// fresh value, between the first look and the re-check: a write whose
	// invalidation was in flight.
	// One key at a time: the 12th fetch ends the first pass.
	fetches := 0
	hook := audit.SourceFunc(func(ctx context.Context, p map[string]string) ([]byte, bool, error) {
		if fetches++; fetches == 12 {
			require.NoError(t, rdb.Del(ctx, stale[0]).Err())
			fresh, _, _ := src.Fetch(ctx, map[string]string{"id": "6"})
			require.NoError(t, rdb.Set(ctx, stale[1], cacheaside.EncodeValue(fresh), 0).Err())
		}
		return src.Fetch(ctx, p)
	})
	a := newAuditor(t, rdb, audit.Config{Sample: 1000, Concurrency: 1})
	rep, err := a.Audit(t.Context(), audit.Check{Family: fam, Source: hook})
	require.NoError(t, err)
	require.Zero(t, rep.Inconsistent)
	require.Equal(t, 10, rep.Consistent)
	require.Equal(t, 2, rep.InFlight)
}

func TestAudit_ShowValues(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	fam := productFamily(t, "")
	src, _ := plant(t, rdb, fam, 3, 1)
	a := newAuditor(t, rdb, audit.Config{ShowValues: true})
	rep, err := a.Audit(t.Context(), audit.Check{Family: fam, Source: src})
	require.NoError(t, err)
	require.Equal(t, audit.Inconsistent, rep.Examples[0].Outcome)
	require.JSONEq(t, `{"id": 0, "price": 1}`, *rep.Examples[0].Cached)
	require.JSONEq(t, `{"id": 0, "price": 100}`, *rep.Examples[0].Source)
}
