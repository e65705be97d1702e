package audit

import (
	"math"

	"github.com/invalidator/invalidator/keyspec"
)

// Outcome is what the audit concluded about one sampled key.
type Outcome string

const (
	// Consistent: the cache held what the source holds.
	Consistent Outcome = "consistent"
	// Inconsistent: the cache differed from the source, and after
	// RecheckAfter it still held the very same value while the source
	// still differed from it: a stale entry no invalidation is fixing.
	Inconsistent Outcome = "inconsistent"
	// InFlight: the cache differed at first, but one side changed before
	// the re-check (an invalidation or a write was in flight).
	InFlight Outcome = "in_flight"
	// Unverifiable: the source failed or timed out; never counted as
	// consistent.
	Unverifiable Outcome = "unverifiable"
)

// Example is one sampled key and its outcome. Values are set only with
// Config.ShowValues: a cache holds data operators should not see by default.
type Example struct {
	Key     string  `json:"key"`
	Outcome Outcome `json:"outcome"`
	Cached  *string `json:"cached,omitempty"`
	Source  *string `json:"source,omitempty"`
	// Error is the source's error, for an unverifiable key.
	Error string `json:"error,omitempty"`
}

// Report is the result of auditing one family.
type Report struct {
	Family string       `json:"family"`
	Mode   keyspec.Mode `json:"mode"`
	// Sampled counts the keys that held data and were compared:
	// Consistent + Inconsistent + InFlight + Unverifiable.
	Sampled      int `json:"sampled"`
	Consistent   int `json:"consistent"`
	Inconsistent int `json:"inconsistent"`
	InFlight     int `json:"in_flight"`
	Unverifiable int `json:"unverifiable"`
	// Skipped counts keys SCAN returned that were not compared: lease
	// markers, failure markers and negative entries (not data), keys gone
	// before the read, values cacheaside did not write, and keys whose
	// parameters cannot be told (keyspec.ErrKeyShape).
	Skipped int `json:"skipped"`
	// Nines is -log10(Inconsistent / verifiable), verifiable being
	// Sampled - Unverifiable. With no inconsistency it is
	// log10(verifiable) and NinesAtLeast is true: the sample shows at
	// least that many nines. nil when nothing was verifiable.
	Nines        *float64 `json:"nines"`
	NinesAtLeast bool     `json:"nines_at_least"`
	// Examples are a few keys, the non-consistent ones first.
	Examples []Example `json:"examples"`
	// Scanned is about how many keys SCAN visited to find the sample
	// (Config.ScanCount a page), within Config.ScanBudget.
	Scanned int `json:"scanned"`
	// Stale lists every key found Inconsistent, in key order: for a
	// version family, the data key at the current version.
	Stale []string `json:"-"`
	// StaleParams are the parameters of each Stale key, in the same order.
	// Heal a delete family by deleting Stale (enqueue DeleteKeys), a
	// version family by bumping each entity's version (BumpVersion with
	// these parameters).
	StaleParams []map[string]string `json:"-"`
	// Note says why the sample is short of Config.Sample, or empty: no
	// key of the family found in the scan budget, or the budget ran out.
	Note string `json:"note,omitempty"`
}

// setNines fills Nines and NinesAtLeast from the counts.
func (r *Report) setNines() {
	verifiable := r.Sampled - r.Unverifiable
	r.Nines, r.NinesAtLeast = nil, false
	if verifiable <= 0 {
		return
	}
	var n float64
	if r.Inconsistent == 0 {
		n = math.Log10(float64(verifiable))
		r.NinesAtLeast = true
	} else {
		n = -math.Log10(float64(r.Inconsistent) / float64(verifiable))
	}
	n = math.Round(n*100) / 100
	r.Nines = &n
}
