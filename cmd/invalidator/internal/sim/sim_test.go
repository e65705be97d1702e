package sim_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/sim"
)

// The definition of staleness, on a hand-made history.
func TestStaleness(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	h := sim.NewHistory(0)
	h.Complete("r", 1, t0)
	h.Complete("r", 3, t0.Add(30*time.Millisecond)) // v3 returned before v2: writers raced
	h.Complete("r", 2, t0.Add(40*time.Millisecond))

	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	require.Zero(t, h.Staleness("r", at(100), 3), "the newest version is never stale")
	require.Zero(t, h.Staleness("r", at(-5), 0), "no version had completed when the read started")
	require.Equal(t, 100*time.Millisecond, h.Staleness("r", at(100), 0), "superseded since v1 completed")
	require.Equal(t, 70*time.Millisecond, h.Staleness("r", at(100), 1), "superseded since the earliest complete version above it (v3)")
	require.Equal(t, 70*time.Millisecond, h.Staleness("r", at(100), 2))
	require.Zero(t, h.Staleness("r", at(20), 1), "v2 and v3 completed after the read started")
}

func TestHistogram(t *testing.T) {
	t.Parallel()
	h := sim.NewHistogram()
	require.Zero(t, h.Quantile(0.99))
	for i := 1; i <= 100; i++ {
		h.Add(time.Duration(i) * time.Millisecond)
	}
	require.EqualValues(t, 100, h.Count())
	require.Equal(t, 100*time.Millisecond, h.Max())
	p50 := h.Quantile(0.5)
	require.InEpsilon(t, float64(50*time.Millisecond), float64(p50), 0.05)
	require.InEpsilon(t, float64(99*time.Millisecond), float64(h.Quantile(0.99)), 0.05)
	require.Equal(t, 100*time.Millisecond, h.Quantile(1))
}

// The one rule: stale at a staleness of the lag bound or more; the bound
// itself counts as stale, as check-freshness and dev both say.
func TestStale(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	h := sim.NewHistory(0)
	h.Complete("r", 1, t0)
	require.False(t, h.Stale("r", t0.Add(999*time.Millisecond), 0, time.Second))
	require.True(t, h.Stale("r", t0.Add(time.Second), 0, time.Second))
	require.False(t, h.Stale("r", t0.Add(time.Hour), 1, time.Second), "the newest version is never stale")
	require.False(t, h.Stale("nope", t0.Add(time.Hour), 0, time.Second), "a row never written is never stale")
	require.False(t, sim.IsStale(0, 0), "a read no write superseded is not stale, whatever the bound")
	require.Equal(t, int64(1), h.Latest("r"))
	require.Equal(t, []string{"r"}, h.Rows())
}

// A bounded history forgets old versions; a read older than every kept
// one is judged against the oldest kept: a lower bound, still stale.
func TestHistoryKeep(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	h := sim.NewHistory(2)
	for v := int64(1); v <= 5; v++ {
		h.Complete("r", v, t0.Add(time.Duration(v)*time.Second))
	}
	h.Complete("r", 5, t0.Add(time.Hour)) // recorded twice: the first time stays
	at := t0.Add(10 * time.Second)
	require.Equal(t, 6*time.Second, h.Staleness("r", at, 3), "v4 completed at 4s")
	require.Equal(t, 6*time.Second, h.Staleness("r", at, 0), "v1..v3 forgotten: measured from v4, a lower bound")
	require.Equal(t, 5*time.Second, h.Staleness("r", at, 4))
	require.Equal(t, int64(5), h.Latest("r"))
}

func TestPercentiles(t *testing.T) {
	t.Parallel()
	ds := make([]time.Duration, 0, 100)
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	require.Equal(t, []time.Duration{time.Millisecond, 50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond},
		sim.Percentiles(ds, 0, 0.5, 0.99, 1))
	require.Equal(t, []time.Duration{0, 0}, sim.Percentiles(nil, 0.5, 0.99))
}

func TestGo(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	r := sim.Go(t.Context(), func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	<-started
	select {
	case <-r.Done():
		t.Fatal("Done closed while run still runs")
	default:
	}
	require.ErrorIs(t, r.Stop(), context.Canceled)
	<-r.Done()
	require.ErrorIs(t, r.Stop(), context.Canceled, "a second Stop returns the same error")
}

// Done tells a caller that run returned by itself, before any Stop.
func TestGoDoneOnEarlyReturn(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	r := sim.Go(t.Context(), func(context.Context) error { return boom })
	<-r.Done()
	require.ErrorIs(t, r.Stop(), boom)
}
