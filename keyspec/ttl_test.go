package keyspec

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fixedRand returns u from every Float64 call.
type fixedRand float64

func (u fixedRand) Float64() float64 { return float64(u) }

func TestJitteredTTLExact(t *testing.T) {
	t.Parallel()

	f := mustFamily(t, "f", "f:{id}", FamilyOptions{TTL: 10 * time.Minute, Jitter: 0.2})
	for _, tc := range []struct {
		u    float64
		want time.Duration
	}{
		{0, 8 * time.Minute},     // TTL * (1 - J)
		{0.25, 9 * time.Minute},  // TTL * (1 - J/2)
		{0.5, 10 * time.Minute},  // TTL
		{0.75, 11 * time.Minute}, // TTL * (1 + J/2)
		{1, 12 * time.Minute},    // TTL * (1 + J), the upper bound
	} {
		require.Equal(t, tc.want, f.JitteredTTL(fixedRand(tc.u)), "u=%v", tc.u)
	}
}

func TestJitteredTTLEdges(t *testing.T) {
	t.Parallel()

	noExpiry := mustFamily(t, "f", "f:{id}", FamilyOptions{Jitter: 0.5})
	require.Equal(t, time.Duration(0), noExpiry.JitteredTTL(fixedRand(0.9)))

	noJitter := mustFamily(t, "f", "f:{id}", FamilyOptions{TTL: time.Minute})
	require.Equal(t, time.Minute, noJitter.JitteredTTL(fixedRand(0.9)))

	// A broken source cannot leave the promised range.
	f := mustFamily(t, "f", "f:{id}", FamilyOptions{TTL: 100 * time.Second, Jitter: 0.1})
	require.Equal(t, 90*time.Second, f.JitteredTTL(fixedRand(-3)))
	require.Equal(t, 110*time.Second, f.JitteredTTL(fixedRand(7)))
	require.Equal(t, 90*time.Second, f.JitteredTTL(fixedRand(math.NaN())))

	// A hand-built family with an out-of-range jitter is capped at 0.5.
	wild := &Family{Name: "w", FamilyOptions: FamilyOptions{TTL: 100 * time.Second, Jitter: 3}}
	require.Equal(t, 50*time.Second, wild.JitteredTTL(fixedRand(0)))

	// A nil source uses math/rand/v2 and stays in range.
	for range 100 {
		d := f.JitteredTTL(nil)
		require.GreaterOrEqual(t, d, 90*time.Second)
		require.LessOrEqual(t, d, 110*time.Second)
	}

	c := NewClass("c")
	c.TTL, c.Jitter = time.Hour, 0.5
	require.Equal(t, 30*time.Minute, c.JitteredTTL(fixedRand(0)))
}

func TestJitteredTTLRangeProperty(t *testing.T) {
	t.Parallel()

	r := rand.New(rand.NewPCG(7, 8))
	for range 2000 {
		ttl := time.Duration(1 + r.Int64N(int64(24*time.Hour)))
		j := r.Float64() * MaxJitter
		f := &Family{Name: "f", FamilyOptions: FamilyOptions{TTL: ttl, Jitter: j}}
		d := f.JitteredTTL(r)
		require.GreaterOrEqual(t, d, time.Duration(math.Round(float64(ttl)*(1-j))))
		require.LessOrEqual(t, d, time.Duration(math.Round(float64(ttl)*(1+j))))
	}
}
