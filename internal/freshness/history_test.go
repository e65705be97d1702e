package freshness

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The definition of staleness, on a hand-made history.
func TestStaleness(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	h := newHistory([]string{"r"})
	h.complete("r", 1, t0)
	h.complete("r", 3, t0.Add(30*time.Millisecond)) // v3 returned before v2: writers raced
	h.complete("r", 2, t0.Add(40*time.Millisecond))

	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	require.Zero(t, h.staleness("r", at(100), 3), "the newest version is never stale")
	require.Zero(t, h.staleness("r", at(-5), 0), "no version had completed when the read started")
	require.Equal(t, 100*time.Millisecond, h.staleness("r", at(100), 0), "superseded since v1 completed")
	require.Equal(t, 70*time.Millisecond, h.staleness("r", at(100), 1), "superseded since the earliest complete version above it (v3)")
	require.Equal(t, 70*time.Millisecond, h.staleness("r", at(100), 2))
	require.Zero(t, h.staleness("r", at(20), 1), "v2 and v3 completed after the read started")
}

func TestHistogram(t *testing.T) {
	t.Parallel()
	h := newHistogram()
	require.Zero(t, h.quantile(0.99))
	for i := 1; i <= 100; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	require.EqualValues(t, 100, h.count())
	require.Equal(t, 100*time.Millisecond, h.maxValue())
	p50 := h.quantile(0.5)
	require.InEpsilon(t, float64(50*time.Millisecond), float64(p50), 0.05)
	require.InEpsilon(t, float64(99*time.Millisecond), float64(h.quantile(0.99)), 0.05)
	require.Equal(t, 100*time.Millisecond, h.quantile(1))
}
