package enqueue

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// Builder checks invalidations against the policy and builds their
// Messages, without any connection. A Client enqueues what its Builder
// makes; the transactional outbox stores it in the caller's transaction. So a
// call is refused, with the same error, wherever it is made. It is safe for
// concurrent use.
//
// Errors name the operation ("delete family: unknown family ..."); a Client
// prefixes them with "enqueue ".
type Builder struct {
	policy *keyspec.Policy
	target string
	now    func() time.Time
	opts   tasks.Overrides
}

// NewBuilder returns a Builder of cfg's Policy, Target and Now, with their
// defaults (see Config). Coalescing is a Client's matter: cfg.Coalesce is
// ignored.
func NewBuilder(cfg Config) *Builder {
	if cfg.Policy == nil {
		cfg.Policy = keyspec.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Builder{policy: cfg.Policy, target: cfg.Target, now: cfg.Now}
}

// With returns a Builder that applies opts over the class defaults, as
// Client.With does.
func (b *Builder) With(opts ...Option) *Builder {
	d := *b
	for _, o := range opts {
		o(&d.opts)
	}
	return &d
}

// Policy returns the policy the Builder checks against.
func (b *Builder) Policy() *keyspec.Policy { return b.policy }

// DeleteKeys builds the deletion of keys: one Message, or several when the
// keys do not fit one task (see tasks.SplitKeys), all stamped with the same
// time, in the policy's default class.
func (b *Builder) DeleteKeys(keys ...string) ([]Message, error) {
	chunks, class, err := b.keysPlan(keys)
	if err != nil {
		return nil, err
	}
	now := b.now()
	msgs := make([]Message, 0, len(chunks))
	for i, chunk := range chunks {
		m, err := b.keysMessage(chunk, now, class)
		if err != nil {
			return nil, fmt.Errorf("delete keys (task %d of %d): %w", i+1, len(chunks), err)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// keysPlan checks a key delete: the keys, the default class and the
// overrides. It returns the keys split into tasks.
func (b *Builder) keysPlan(keys []string) ([][]string, *keyspec.Class, error) {
	chunks, err := tasks.SplitKeys(keys)
	if err != nil {
		return nil, nil, fmt.Errorf("delete keys: %w", err)
	}
	class, err := b.policy.Class(b.policy.DefaultClass)
	if err != nil {
		return nil, nil, fmt.Errorf("delete keys: default class: %w", err)
	}
	if err := b.checkOverrides(); err != nil {
		return nil, nil, fmt.Errorf("delete keys: %w", err)
	}
	return chunks, class, nil
}

// keysMessage builds one key-delete task of keys that keysPlan accepted.
func (b *Builder) keysMessage(keys []string, at time.Time, class *keyspec.Class) (Message, error) {
	return b.message(tasks.DeleteKeys{Keys: keys, Target: b.target, EnqueuedAt: at}, class)
}

// DeleteFamily builds a pattern delete of one family: every key of the
// family whose parameters match params; parameters left out match any
// value. An unknown family, an unknown parameter, a version family or a
// delete that would be too wide is refused.
func (b *Builder) DeleteFamily(family string, params map[string]string) (Message, error) {
	fam, class, err := b.family(family)
	if err != nil {
		return Message{}, fmt.Errorf("delete family: %w", err)
	}
	if fam.Strategy == keyspec.StrategyVersion {
		return Message{}, fmt.Errorf("delete family %q: it uses the version strategy; call BumpVersion instead", family)
	}
	if _, err := fam.Pattern(params); err != nil {
		return Message{}, fmt.Errorf("delete family: %w", err)
	}
	m, err := b.message(tasks.DeleteFamily{Family: family, Params: params, Target: b.target, EnqueuedAt: b.now()}, class)
	if err != nil {
		return Message{}, fmt.Errorf("delete family %q: %w", family, err)
	}
	return m, nil
}

// BumpVersion builds a version bump of one instance of a version family.
// Every parameter of the family's template must be given.
func (b *Builder) BumpVersion(family string, params map[string]string) (Message, error) {
	fam, class, err := b.family(family)
	if err != nil {
		return Message{}, fmt.Errorf("bump version: %w", err)
	}
	if _, err := fam.VersionKey(params); err != nil {
		return Message{}, fmt.Errorf("bump version: %w", err)
	}
	m, err := b.message(tasks.BumpVersion{Family: family, Params: params, Target: b.target, EnqueuedAt: b.now()}, class)
	if err != nil {
		return Message{}, fmt.Errorf("bump version %q: %w", family, err)
	}
	return m, nil
}

// Publish builds one event task, in the event's class (see
// keyspec.Policy.ClassOfEvent). An unknown event or a missing, unknown or
// empty attribute is refused.
func (b *Builder) Publish(event string, attrs map[string]string) (Message, error) {
	m, _, err := b.publish(event, attrs)
	return m, err
}

// publish is Publish, and also returns the actions the event resolves to
// with attrs (the refused ones left out).
func (b *Builder) publish(event string, attrs map[string]string) (Message, []keyspec.Action, error) {
	e, err := b.policy.Event(event)
	if err != nil {
		return Message{}, nil, fmt.Errorf("publish: %w", err)
	}
	// An event is refused only when it would invalidate nothing: a value
	// outside one family's declaration skips that family's action at the
	// worker, and the others still apply.
	actions, refused, err := b.policy.Resolve(event, attrs)
	if err == nil {
		err = keyspec.RefusedAll(event, actions, refused)
	}
	if err != nil {
		return Message{}, nil, fmt.Errorf("publish: %w", err)
	}
	m, err := b.message(tasks.Event{Name: event, Attrs: attrs, Target: b.target, EnqueuedAt: b.now()}, b.policy.ClassOfEvent(e))
	if err != nil {
		return Message{}, nil, fmt.Errorf("publish %q: %w", event, err)
	}
	return m, actions, nil
}

func (b *Builder) family(name string) (*keyspec.Family, *keyspec.Class, error) {
	fam, err := b.policy.Family(name)
	if err != nil {
		return nil, nil, err
	}
	return fam, b.policy.ClassOf(fam), nil
}

// checkOverrides refuses overrides that would not do what they say: a
// MaxRetry or Timeout that asynq would change, and a Queue that no class
// has, since a task on a queue no worker serves would wait there forever.
func (b *Builder) checkOverrides() error {
	if n := b.opts.MaxRetry; n != nil && *n < 0 {
		return fmt.Errorf("MaxRetry(%d): want 0 or more (0 sends a failed task straight to the dead letter): %w", *n, ErrInvalidOption)
	}
	if d := b.opts.Timeout; d < 0 || d%time.Second != 0 {
		return fmt.Errorf("Timeout(%s): want a whole number of seconds, as asynq counts them, or 0 for the class's: %w", d, ErrInvalidOption)
	}
	if q := b.opts.Queue; q != "" && !slices.Contains(b.policy.Queues(), q) {
		return fmt.Errorf("queue %q belongs to no class of the policy, so no worker serves it; use one of %s: %w",
			q, strings.Join(b.policy.Queues(), ", "), ErrUnknownQueue)
	}
	return nil
}

// message checks the overrides and makes t's Message in class, with them.
func (b *Builder) message(t tasks.Task, class *keyspec.Class) (Message, error) {
	if err := b.checkOverrides(); err != nil {
		return Message{}, err
	}
	return tasks.NewEnvelope(b.policy, class, t, b.opts, nil)
}

// PublishBatched builds an event publication for a producer that enqueues
// many at once and merges them (invalidator cdc, with Merge): when every
// invalidation the event resolves to is a key delete of a family in enforce
// mode, one DeleteKeys Message per class, which Merge coalesces with other
// publications' key deletes into few tasks; otherwise (a pattern delete, a
// version bump, a shadow or off family, a family that refuses the values)
// the event task, as Publish builds it, for the worker to resolve. The
// checks and refusals are Publish's.
func (b *Builder) PublishBatched(event string, attrs map[string]string) ([]Message, error) {
	m, actions, err := b.publish(event, attrs)
	if err != nil {
		return nil, err
	}
	e, _ := b.policy.Event(event)
	if len(actions) < len(e.Invalidates) {
		return []Message{m}, nil // refusals: the worker logs and counts them
	}
	var classes []*keyspec.Class
	byClass := map[*keyspec.Class][]string{}
	for _, a := range actions {
		if a.Kind != keyspec.ActionDelete || a.Family.Mode != keyspec.ModeEnforce {
			return []Message{m}, nil
		}
		c := b.policy.ClassOf(a.Family)
		if _, ok := byClass[c]; !ok {
			classes = append(classes, c)
		}
		byClass[c] = append(byClass[c], a.Key)
	}
	now := b.now()
	msgs := make([]Message, 0, len(classes))
	for _, c := range classes {
		km, err := b.keysMessage(byClass[c], now, c)
		if err != nil {
			return nil, fmt.Errorf("publish %q: %w", event, err)
		}
		msgs = append(msgs, km)
	}
	return msgs, nil
}
