package sim

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Quantiles are nearest rank: the q-quantile of n samples is the
// ceil(q·n)-th smallest (the first for q = 0).

// rank is the 0-based index of the q-quantile of n > 0 samples.
func rank(q float64, n int) int {
	return min(max(int(math.Ceil(q*float64(n)))-1, 0), n-1)
}

// Percentiles returns the qs-quantiles of ds, every sample kept; it sorts
// ds. Without samples every quantile is 0.
func Percentiles(ds []time.Duration, qs ...float64) []time.Duration {
	out := make([]time.Duration, len(qs))
	if len(ds) == 0 {
		return out
	}
	slices.Sort(ds)
	for i, q := range qs {
		out[i] = ds[rank(q, len(ds))]
	}
	return out
}

// Histogram keeps durations in logarithmic buckets 5% wide, from 1µs to
// hours, so a long run's millions of samples take constant memory and a
// quantile is off by at most 5%. It is safe for concurrent use.
type Histogram struct {
	mu     sync.Mutex
	counts map[int]int64 // bucket index -> samples; guarded by mu
	n      int64         // guarded by mu
	max    time.Duration // guarded by mu
}

const bucketGrowth = 1.05

// NewHistogram returns an empty Histogram.
func NewHistogram() *Histogram { return &Histogram{counts: make(map[int]int64)} }

func bucketOf(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	return int(math.Ceil(math.Log(us) / math.Log(bucketGrowth)))
}

// upper returns the largest duration of bucket i.
func upper(i int) time.Duration {
	return time.Duration(math.Pow(bucketGrowth, float64(i)) * float64(time.Microsecond))
}

// Add records one sample.
func (h *Histogram) Add(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[bucketOf(d)]++
	h.n++
	h.max = max(h.max, d)
}

// Quantile returns the q-quantile (0 < q <= 1) as its bucket's upper
// bound, never above the largest sample; 0 without samples.
func (h *Histogram) Quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	want := int64(rank(q, int(h.n))) + 1
	idx := make([]int, 0, len(h.counts))
	for i := range h.counts {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var seen int64
	for _, i := range idx {
		seen += h.counts[i]
		if seen >= want {
			return min(upper(i), h.max)
		}
	}
	return h.max
}

// Count returns the number of samples.
func (h *Histogram) Count() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Max returns the largest sample, 0 without samples.
func (h *Histogram) Max() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.max
}
