package audit

import "context"

// Source reads the source of truth of one family: the value the cache
// should hold for a key with these parameter values (the family's template
// parameters, parsed from the sampled key).
//
// Fetch returns the bytes the application's loader would return for that
// entity, and found=false when the entity does not exist. An error (or a
// Fetch that outlives Config.SourceTimeout) makes the key unverifiable:
// never consistent. Implementations must be safe for concurrent use and
// must not write: an audit only reads.
type Source interface {
	Fetch(ctx context.Context, params map[string]string) (value []byte, found bool, err error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context, params map[string]string) ([]byte, bool, error)

// Fetch implements Source.
func (f SourceFunc) Fetch(ctx context.Context, params map[string]string) ([]byte, bool, error) {
	return f(ctx, params)
}
