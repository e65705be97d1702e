package enqueue

import (
	"errors"
	"fmt"

	"github.com/invalidator/invalidator/tasks"
)

// EveryKeyOf builds the invalidation of every key that event can
// invalidate, whatever its attribute values: for each family the event
// names (once), a family delete with every parameter a wildcard. It is what
// invalidator cdc enqueues for a TRUNCATE, which names no rows.
//
// A delete family's keys are deleted by pattern, so the family's max_keys,
// mode and dead-letter rules apply. A version family's version keys are
// deleted by pattern (see keyspec.Family.VersionKeysMatcher): each entity
// restarts above every version handed out, as after an eviction, so its old
// data is orphaned as a bump would orphan it. Workers older than this
// release refuse such a task as poison; it waits in the dead letter.
//
// A family whose pattern would be unsafe (a template that starts with a
// parameter, keyspec.ErrUnsafePattern) cannot be deleted whole: it is left
// out, and the returned error names it, alongside the Messages of the
// others.
func (b *Builder) EveryKeyOf(event string) ([]Message, error) {
	e, err := b.policy.Event(event)
	if err != nil {
		return nil, fmt.Errorf("every key of: %w", err)
	}
	var msgs []Message
	var errs []error
	seen := map[string]bool{}
	for _, inv := range e.Invalidates {
		if seen[inv.Family] {
			continue
		}
		seen[inv.Family] = true
		fam, class, err := b.family(inv.Family)
		if err == nil {
			_, err = fam.DeleteMatcher(nil)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m, err := b.message(tasks.DeleteFamily{Family: fam.Name, Target: b.target, EnqueuedAt: b.now()}, class)
		if err != nil {
			errs = append(errs, fmt.Errorf("delete family %q: %w", fam.Name, err))
			continue
		}
		msgs = append(msgs, m)
	}
	if len(errs) > 0 {
		return msgs, fmt.Errorf("every key of event %q: %w", event, errors.Join(errs...))
	}
	return msgs, nil
}
