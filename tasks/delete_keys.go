package tasks

import (
	"fmt"
	"time"
)

// DeleteKeys deletes exact keys from a cache target (UNLINK, batched by the
// worker). Application code enqueues one per write, with every key the write
// makes stale; SplitKeys chunks lists longer than one task may hold.
type DeleteKeys struct {
	// Keys are the keys to delete: 1 to MaxKeysPerTask, each 1 to
	// MaxKeyBytes bytes. Any bytes: a Go string carries arbitrary bytes and
	// the codec round-trips them exactly.
	Keys []string
	// Target names the cache target; "" means the worker's default cache.
	Target string
	// EnqueuedAt is stamped by the producer so the worker can measure lag.
	// The zero time is allowed and means "unknown".
	EnqueuedAt time.Time
}

// Kind returns KindDeleteKeys.
func (DeleteKeys) Kind() string { return KindDeleteKeys }

// Validate checks the key count and sizes, the target and that the encoded
// payload fits MaxPayloadBytes.
func (t DeleteKeys) Validate() error {
	if err := t.validate(); err != nil {
		return fmt.Errorf("%s task: %w", KindDeleteKeys, err)
	}
	return nil
}

// validate is Validate without the kind prefix, for callers that add their own.
func (t DeleteKeys) validate() error {
	if len(t.Keys) == 0 {
		return fmt.Errorf("no keys: %w", ErrInvalid)
	}
	if len(t.Keys) > MaxKeysPerTask {
		return fmt.Errorf("%d keys exceed MaxKeysPerTask (%d), split them with SplitKeys: %w",
			len(t.Keys), MaxKeysPerTask, ErrInvalid)
	}
	for i, k := range t.Keys {
		if err := validateKey(k); err != nil {
			return fmt.Errorf("key %d: %w", i, err)
		}
	}
	if err := validateCommon(t.Target, t.EnqueuedAt); err != nil {
		return err
	}
	if n := t.encodedLen(); n > MaxPayloadBytes {
		return fmt.Errorf("encoded payload of %d bytes exceeds MaxPayloadBytes (%d), split the keys with SplitKeys: %w",
			n, MaxPayloadBytes, ErrInvalid)
	}
	return nil
}

// validateKey checks one key. The message never includes the key itself:
// keys can be binary or sensitive, and the index names it well enough.
func validateKey(k string) error {
	if k == "" {
		return fmt.Errorf("empty key: %w", ErrInvalid)
	}
	if len(k) > MaxKeyBytes {
		return fmt.Errorf("%d bytes exceed MaxKeyBytes (%d), keys are never truncated: %w",
			len(k), MaxKeyBytes, ErrInvalid)
	}
	return nil
}
