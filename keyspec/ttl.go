package keyspec

import (
	"math"
	"math/rand/v2"
	"time"
)

// Rand is the random source for TTL jitter; *math/rand/v2.Rand satisfies it.
// Tests inject a fixed one to get exact TTLs.
type Rand interface{ Float64() float64 }

// JitteredTTL returns the family's TTL spread by its jitter:
// TTL * (1 + Jitter*(2u-1)) with u = r.Float64(), so the result lies in
// [TTL*(1-Jitter), TTL*(1+Jitter)]. Entries written together (after a deploy,
// or a popular invalidation) then do not all expire in the same instant and
// stampede the database. A TTL of 0 (no expiry) stays 0. A nil r uses the
// math/rand/v2 top-level source.
func (f *Family) JitteredTTL(r Rand) time.Duration {
	return jitter(f.TTL, f.Jitter, r)
}

// JitteredTTL returns the class TTL spread by the class jitter, as
// Family.JitteredTTL does; use it for raw keys that belong to no family.
func (c *Class) JitteredTTL(r Rand) time.Duration {
	return jitter(c.TTL, c.Jitter, r)
}

// jitter spreads ttl by the fraction j using u from r.
func jitter(ttl time.Duration, j float64, r Rand) time.Duration {
	if ttl <= 0 || !(j > 0) {
		return ttl
	}
	j = min(j, MaxJitter) // a Family built by hand may hold any value
	var u float64
	if r == nil {
		u = rand.Float64()
	} else {
		u = r.Float64()
	}
	// A misbehaving source (NaN, out of [0, 1)) must not push the TTL out of
	// its promised range.
	if !(u >= 0) {
		u = 0
	} else if u > 1 {
		u = 1
	}
	if float64(ttl)*(1+j) >= math.MaxInt64 {
		return ttl // centuries: jitter would overflow and cannot matter
	}
	// Rounded, not truncated, so 10m with factor 0.9 is 9m, not 9m-1ns.
	scale := func(f float64) time.Duration { return time.Duration(math.Round(float64(ttl) * f)) }
	d, lo, hi := scale(1+j*(2*u-1)), scale(1-j), scale(1+j)
	return min(max(d, lo), hi)
}
