package freshness

import (
	"math"
	"slices"
	"sync"
	"time"
)

// histogram keeps durations in logarithmic buckets 5% wide, from 1µs to
// hours, so a long run's millions of samples take constant memory and a
// percentile is off by at most 5%.
type histogram struct {
	mu     sync.Mutex
	counts map[int]int64 // bucket index -> samples; guarded by mu
	n      int64         // guarded by mu
	max    time.Duration // guarded by mu
}

const bucketGrowth = 1.05

func newHistogram() *histogram { return &histogram{counts: make(map[int]int64)} }

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

func (h *histogram) add(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[bucketOf(d)]++
	h.n++
	h.max = max(h.max, d)
}

// quantile returns the q-quantile (0 < q <= 1), never above the largest
// sample; 0 without samples.
func (h *histogram) quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	idx := make([]int, 0, len(h.counts))
	for i := range h.counts {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var seen int64
	for _, i := range idx {
		seen += h.counts[i]
		if seen >= rank {
			return min(upper(i), h.max)
		}
	}
	return h.max
}

func (h *histogram) count() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

func (h *histogram) maxValue() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.max
}
