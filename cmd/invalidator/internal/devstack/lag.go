package devstack

import (
	"math"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// lagWindow reads the worker's lag histogram and applied counter from a
// registry, and gives quantiles over the buckets observed since the last
// call (a bucket's upper bound stands for its observations, so a quantile
// reads "at most").
type lagWindow struct {
	g    prometheus.Gatherer
	prev map[float64]uint64 // cumulative bucket counts at the last call
}

func newLagWindow(g prometheus.Gatherer) *lagWindow { return &lagWindow{g: g} }

// reset makes the next quantiles cover everything since the start.
func (l *lagWindow) reset() { l.prev = nil }

// applied returns invalidator_invalidations_applied_total summed.
func (l *lagWindow) applied() float64 {
	var sum float64
	for _, m := range l.family("invalidator_invalidations_applied_total") {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// quantiles returns p50 and p99 of the lag observed since the last call,
// or -1 when nothing was observed.
func (l *lagWindow) quantiles() (time.Duration, time.Duration) {
	cum := map[float64]uint64{}
	for _, m := range l.family("invalidator_lag_seconds") {
		for _, b := range m.GetHistogram().GetBucket() {
			cum[b.GetUpperBound()] += b.GetCumulativeCount()
		}
	}
	bounds := make([]float64, 0, len(cum))
	for b := range cum {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	delta := make([]uint64, len(bounds))
	for i, b := range bounds {
		delta[i] = cum[b] - l.prev[b]
	}
	l.prev = cum
	if len(delta) == 0 || delta[len(delta)-1] == 0 {
		return -1, -1
	}
	total := delta[len(delta)-1]
	q := func(p float64) time.Duration {
		want := uint64(math.Ceil(p * float64(total)))
		for i, c := range delta {
			if c < want {
				continue
			}
			b := bounds[i]
			if math.IsInf(b, 1) && i > 0 {
				b = bounds[i-1] // past the last bucket: shown as its bound
			}
			return time.Duration(b * float64(time.Second))
		}
		return -1
	}
	return q(0.5), q(0.99)
}

func (l *lagWindow) family(name string) []*dto.Metric {
	if l.g == nil {
		return nil
	}
	fams, err := l.g.Gather()
	if err != nil {
		return nil
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}
