package tasks

import (
	"fmt"
	"time"
)

// Event announces that something changed ("product.updated", id=7). The
// worker resolves it against its policy into the key deletes, pattern
// deletes and version bumps the policy's events section lists for it, so
// a write site names what changed, not every cache that depends on it.
type Event struct {
	// Name is the event's name as declared in the policy; not empty.
	Name string
	// Attrs are the event's attributes, name to value, that the policy
	// maps onto family template parameters. Names are made of
	// [A-Za-z0-9_]; values are any non-empty bytes up to MaxKeyBytes.
	Attrs map[string]string
	// Target names the cache target; "" means the worker's default cache.
	Target string
	// EnqueuedAt is stamped by the producer so the worker can measure lag.
	// The zero time is allowed and means "unknown".
	EnqueuedAt time.Time
}

// Kind returns KindEvent.
func (Event) Kind() string { return KindEvent }

// Validate checks the event name, the attributes, the target and that the
// encoded payload fits MaxPayloadBytes. Whether the policy knows the event
// is checked by enqueue and by the worker, against their policies.
func (t Event) Validate() error {
	if err := validateNamed("event name", t.Name, t.Attrs, t.Target, t.EnqueuedAt); err != nil {
		return fmt.Errorf("%s task: %w", KindEvent, err)
	}
	return nil
}
