package freshness

import (
	"context"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/sim"
)

// Source is the source of truth: rows identified by name, each at a version
// that only its writes advance. A row never written is at version 0.
// Implementations must be safe for concurrent use.
type Source interface {
	// Read returns the row's current version: the one of the last
	// committed write.
	Read(ctx context.Context, row string) (int64, error)
	// Write advances the row's version by one and returns the new version
	// once the write is committed, i.e. visible to every later Read.
	Write(ctx context.Context, row string) (int64, error)
}

// Memory is an in-memory Source (sim.Memory, which dev uses too).
type Memory = sim.Memory

// NewMemory returns an empty in-memory Source.
func NewMemory() *Memory { return sim.NewMemory() }
