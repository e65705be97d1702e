package sim

import (
	"context"
	"sync"
)

// Memory is a versioned source of truth in memory: rows identified by
// name, each at the version of its last write (0 before the first). It is
// safe for concurrent use.
type Memory struct {
	mu   sync.Mutex
	rows map[string]int64 // guarded by mu
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{rows: make(map[string]int64)} }

// Read returns the row's current version.
func (m *Memory) Read(_ context.Context, row string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rows[row], nil
}

// Write advances the row's version by one and returns the new version,
// visible to every later Read.
func (m *Memory) Write(_ context.Context, row string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows[row]++
	return m.rows[row], nil
}
