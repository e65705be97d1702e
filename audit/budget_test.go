package audit_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/audit"
	"github.com/invalidator/invalidator/internal/redistest"
)

// A family absent from a big cache costs the scan budget, not the whole
// cache, and the report says what was scanned.
func TestAudit_ScanBudgetBoundsTheSearchForAnAbsentFamily(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	const others = 20000
	pipe := rdb.Pipeline()
	for i := range others {
		pipe.Set(t.Context(), fmt.Sprint("session:", i), "x", 0)
	}
	_, err := pipe.Exec(t.Context())
	require.NoError(t, err)
	fam := productFamily(t, "")
	src, _ := plant(t, rdb, fam, 10, 1)
	// The source knows the family; the cache holds none of it.
	require.NoError(t, rdb.Del(t.Context(), keysOf(t, rdb, "product:*")...).Err())

	const budget, count = 2000, 100
	a := newAuditor(t, rdb, audit.Config{Sample: 10, ScanBudget: budget, ScanCount: count})
	rep, err := a.Audit(t.Context(), audit.Check{Family: fam, Source: src})
	require.NoError(t, err)
	require.Zero(t, rep.Sampled+rep.Skipped)
	require.LessOrEqual(t, rep.Scanned, budget+count, "one page past the budget at most")
	require.GreaterOrEqual(t, rep.Scanned, budget)
	require.Contains(t, rep.Note, fmt.Sprintf("found none of the family's keys: scanned about %d of the cache's %d keys, the scan budget", rep.Scanned, others))

	// A family smaller than the sample in a cache within the budget is
	// seen whole, with no note.
	small := redistest.Client(t)
	src, _ = plant(t, small, fam, 30, 1)
	a = newAuditor(t, small, audit.Config{Sample: 1000, ScanBudget: budget, ScanCount: count})
	rep, err = a.Audit(t.Context(), audit.Check{Family: fam, Source: src})
	require.NoError(t, err)
	require.Equal(t, 31, rep.Sampled)
	require.Empty(t, rep.Note, "the family was seen whole")

	empty := redistest.Client(t)
	rep, err = newAuditor(t, empty, audit.Config{}).Audit(t.Context(), audit.Check{Family: fam, Source: src})
	require.NoError(t, err)
	require.Equal(t, "found none of the family's keys: scanned the whole cache, 0 keys", rep.Note)
}

func keysOf(t *testing.T, rdb interface {
	Keys(ctx context.Context, pattern string) *redis.StringSliceCmd
}, pattern string) []string {
	t.Helper()
	ks, err := rdb.Keys(t.Context(), pattern).Result()
	require.NoError(t, err)
	return ks
}
