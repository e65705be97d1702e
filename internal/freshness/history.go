package freshness

import (
	"sync"
	"time"
)

// history records when each version of each row was complete (its write
// returned) and judges reads against it; see the package doc for the
// definitions.
type history struct {
	rows map[string]*rowHistory // fixed at construction, so read without a lock
}

type rowHistory struct {
	mu sync.Mutex
	// completed[v-1] is when version v was complete; zero while its write
	// has not returned. Guarded by mu.
	completed []time.Time
}

func newHistory(rows []string) *history {
	h := &history{rows: make(map[string]*rowHistory, len(rows))}
	for _, r := range rows {
		h.rows[r] = &rowHistory{}
	}
	return h
}

// complete records that version v of row was complete at t.
func (h *history) complete(row string, v int64, t time.Time) {
	rh := h.rows[row]
	rh.mu.Lock()
	defer rh.mu.Unlock()
	for int64(len(rh.completed)) < v {
		rh.completed = append(rh.completed, time.Time{})
	}
	rh.completed[v-1] = t
}

// staleness of a read of row that started at start and returned version r:
// how long before start the earliest complete version above r was complete;
// 0 if none was, or if it completed after start.
func (h *history) staleness(row string, start time.Time, r int64) time.Duration {
	rh := h.rows[row]
	rh.mu.Lock()
	defer rh.mu.Unlock()
	var earliest time.Time
	for v := r + 1; v <= int64(len(rh.completed)); v++ {
		// Versions above r complete in nearly, not strictly, increasing
		// order when writers race on a row, so look at all of them.
		if t := rh.completed[v-1]; !t.IsZero() && (earliest.IsZero() || t.Before(earliest)) {
			earliest = t
		}
	}
	if earliest.IsZero() || !earliest.Before(start) {
		return 0
	}
	return start.Sub(earliest)
}
