package audit_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/audit"
	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/internal/redistest"
)

// Under writes that each invalidate their key right after the source
// changes, and readers that refill through cacheaside's leases, every
// difference the audit sees is an invalidation in flight: the re-check
// must leave 0 inconsistent.
func TestAudit_NoFalsePositivesUnderWriteAndInvalidateLoad(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	fam := productFamily(t, "")
	src := &memSource{rows: map[string]string{}}
	const ids = 200
	for i := range ids {
		src.set(fmt.Sprint(i), "v0")
	}
	cache, err := cacheaside.New(cacheaside.Config{Redis: rdb, TTL: time.Hour})
	require.NoError(t, err)
	get := func(ctx context.Context, id string) {
		key, _ := fam.Key(map[string]string{"id": id})
		_, _ = cache.Get(ctx, key, func(ctx context.Context) ([]byte, error) {
			v, _, err := src.Fetch(ctx, map[string]string{"id": id})
			return v, err
		})
	}
	for i := range ids {
		get(t.Context(), fmt.Sprint(i))
	}

	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	// ~1,000 writes/s for as long as the audit runs, 20,000 at most.
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for n := 0; n < 20000 && ctx.Err() == nil; n++ {
			<-tick.C
			id := fmt.Sprint(rand.IntN(ids))
			src.set(id, fmt.Sprint("v", n+1))
			key, _ := fam.Key(map[string]string{"id": id})
			// The invalidation, as a worker applies it: the key is gone.
			_ = rdb.Unlink(context.Background(), key).Err()
		}
	})
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				get(ctx, fmt.Sprint(rand.IntN(ids)))
			}
		})
	}
	a := newAuditor(t, rdb, audit.Config{Sample: ids, RecheckAfter: 100 * time.Millisecond})
	var reps []audit.Report
	for range 3 {
		rep, err := a.Audit(t.Context(), audit.Check{Family: fam, Source: src})
		require.NoError(t, err)
		reps = append(reps, rep)
	}
	stop()
	wg.Wait()
	sampled := 0
	for _, rep := range reps {
		require.Zero(t, rep.Inconsistent, "%+v", rep)
		sampled += rep.Sampled
	}
	require.Positive(t, sampled)
	t.Logf("reports: %+v", reps)
}
