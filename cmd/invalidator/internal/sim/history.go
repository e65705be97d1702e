package sim

import (
	"sync"
	"time"
)

// History records when each version of each row was complete and judges
// reads against it (see the package doc for the definitions). It is safe
// for concurrent use.
type History struct {
	keep int // versions kept per row; 0 keeps all

	mu   sync.Mutex             // guards rows
	rows map[string]*rowHistory // rows are never removed
}

type rowHistory struct {
	mu sync.Mutex
	// done holds the row's complete versions in version order; guarded
	// by mu.
	done []completion
}

type completion struct {
	version int64
	at      time.Time
}

// NewHistory returns an empty History that keeps the keep newest complete
// versions of each row, or all of them when keep is 0. With a bound, a
// read older than every kept version is judged against the oldest kept
// one: its staleness is then a lower bound (a long run's memory stays
// constant, and such a read is that stale at least).
func NewHistory(keep int) *History {
	return &History{keep: max(keep, 0), rows: make(map[string]*rowHistory)}
}

func (h *History) row(name string, create bool) *rowHistory {
	h.mu.Lock()
	defer h.mu.Unlock()
	rh := h.rows[name]
	if rh == nil && create {
		rh = &rowHistory{}
		h.rows[name] = rh
	}
	return rh
}

// Complete records that version v of row was complete at t. Versions may
// arrive out of order (writers racing on a row); a version recorded twice
// keeps its first time.
func (h *History) Complete(row string, v int64, t time.Time) {
	rh := h.row(row, true)
	rh.mu.Lock()
	defer rh.mu.Unlock()
	i := len(rh.done)
	for i > 0 && rh.done[i-1].version > v {
		i--
	}
	if i > 0 && rh.done[i-1].version == v {
		return
	}
	rh.done = append(rh.done, completion{})
	copy(rh.done[i+1:], rh.done[i:])
	rh.done[i] = completion{version: v, at: t}
	if h.keep > 0 && len(rh.done) > h.keep {
		rh.done = append(rh.done[:0], rh.done[len(rh.done)-h.keep:]...)
	}
}

// Staleness of a read of row that started at start and returned version
// r: how long before start the earliest complete version above r was
// complete; 0 if none was complete before start.
func (h *History) Staleness(row string, start time.Time, r int64) time.Duration {
	rh := h.row(row, false)
	if rh == nil {
		return 0
	}
	rh.mu.Lock()
	defer rh.mu.Unlock()
	var earliest time.Time
	for i := len(rh.done) - 1; i >= 0 && rh.done[i].version > r; i-- {
		// Versions complete in nearly, not strictly, increasing order
		// when writers race on a row, so look at all of them.
		if t := rh.done[i].at; earliest.IsZero() || t.Before(earliest) {
			earliest = t
		}
	}
	if earliest.IsZero() || !earliest.Before(start) {
		return 0
	}
	return start.Sub(earliest)
}

// Stale reports whether a read of row that started at start and returned
// version r was stale under lag bound bound: its staleness is at least
// bound.
func (h *History) Stale(row string, start time.Time, r int64, bound time.Duration) bool {
	return IsStale(h.Staleness(row, start, r), bound)
}

// IsStale is the rule on a staleness already measured: at least bound,
// and above 0 (a read no write superseded is never stale).
func IsStale(staleness, bound time.Duration) bool {
	return staleness > 0 && staleness >= bound
}

// Latest returns the highest complete version of row, 0 for none.
func (h *History) Latest(row string) int64 {
	rh := h.row(row, false)
	if rh == nil {
		return 0
	}
	rh.mu.Lock()
	defer rh.mu.Unlock()
	if len(rh.done) == 0 {
		return 0
	}
	return rh.done[len(rh.done)-1].version
}

// Rows returns the rows with a complete version, in no order.
func (h *History) Rows() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.rows))
	for name := range h.rows {
		out = append(out, name)
	}
	return out
}
