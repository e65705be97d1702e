package keyspec

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
)

// eventNameRE keeps event names readable in logs and metrics labels:
// "product.updated", "user_deleted".
var eventNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

// Event is a declared change in the application ("product.updated") and
// the invalidations it triggers. Write sites publish the event with its
// attributes; the policy, not the write site, decides which keys die, so a
// new cache that depends on products needs a policy line, not a change at
// every write site.
type Event struct {
	// Name of the event, [a-z0-9][a-z0-9_.-]*.
	Name string
	// Owner is the team or person owning the event, for humans.
	Owner string
	// Description says when the event is published, for humans.
	Description string
	// Attributes are the names every publication must give, exactly: a
	// missing or unknown attribute is refused at enqueue time.
	Attributes []string
	// Invalidates lists what the event invalidates, in file order; never
	// empty in a loaded policy.
	Invalidates []Invalidation
}

// Invalidation is one family an event invalidates, and where its template
// parameters come from.
type Invalidation struct {
	// Family names a family of the policy.
	Family string
	// Params maps template parameters to the event attributes that give
	// their values, where the names differ ({sku: id}). A parameter that
	// is neither here nor in Wildcard takes the attribute of its own name.
	Params map[string]string
	// Wildcard lists template parameters left open: the invalidation
	// becomes a pattern delete over every value of them (a SCAN), which
	// only a delete family allows.
	Wildcard []string
}

// ActionKind is what an invalidation does to the cache.
type ActionKind string

const (
	// ActionDelete deletes one key (UNLINK).
	ActionDelete ActionKind = "delete"
	// ActionPattern deletes every key matching a pattern (SCAN + UNLINK).
	ActionPattern ActionKind = "pattern"
	// ActionBump advances a version family's version.
	ActionBump ActionKind = "bump"
)

// Action is one resolved invalidation of an event publication.
type Action struct {
	Kind   ActionKind
	Family *Family
	// Params are the family parameters with their values; wildcards are
	// absent.
	Params map[string]string
	// Key is the key to delete (ActionDelete) or the version key to
	// advance (ActionBump).
	Key string
	// Pattern is the SCAN MATCH pattern of an ActionPattern.
	Pattern string
}

// Refusal is an invalidation of an event publication that the attribute
// values cannot render: a value outside its parameter's declaration
// (ErrInvalidParam), or one that would move the family's hash tag
// (ErrUnsafeHashTag). Rendering a key of the family refuses such a value
// (Family.Key, Pattern, VersionKey, and so cacheaside), so no entry of the
// family is cached under it and nothing of the family is left to
// invalidate: skipping the invalidation loses nothing, where refusing the
// whole event would lose the invalidations of its other families.
type Refusal struct {
	Kind   ActionKind
	Family *Family
	// Err says why, naming the family, parameter, value and declaration;
	// it wraps ErrInvalidParam or ErrUnsafeHashTag.
	Err error
}

// RefusedAll returns an error when a publication invalidates nothing
// because every one of its invalidations was refused, and nil otherwise.
// It wraps each refusal's error, so errors.Is finds ErrInvalidParam or
// ErrUnsafeHashTag. A producer refuses such a publication: its values are
// wrong for every family the event names (a worker skips it, counted).
func RefusedAll(event string, actions []Action, refused []Refusal) error {
	if len(actions) > 0 || len(refused) == 0 {
		return nil
	}
	errs := make([]error, len(refused))
	for i, r := range refused {
		errs[i] = r.Err
	}
	return fmt.Errorf("event %q invalidates nothing with these attribute values, every family refuses them: %w",
		event, errors.Join(errs...))
}

// kind returns what inv does to family f: a bump for a version family, a
// pattern delete when some parameter is a wildcard, else a key delete.
func (inv Invalidation) kind(f *Family) ActionKind {
	switch {
	case f.Strategy == StrategyVersion:
		return ActionBump
	case len(inv.Wildcard) > 0:
		return ActionPattern
	}
	return ActionDelete
}

// source returns the attribute that gives template parameter param, or ""
// for a wildcard.
func (inv Invalidation) source(param string) string {
	if slices.Contains(inv.Wildcard, param) {
		return ""
	}
	if a, ok := inv.Params[param]; ok {
		return a
	}
	return param
}

// Event returns the named event, or an error wrapping ErrUnknownEvent.
func (p *Policy) Event(name string) (*Event, error) {
	if e, ok := p.Events[name]; ok {
		return e, nil
	}
	return nil, fmt.Errorf("%w %q in %s (declared: %s); declare it under events: or fix the name",
		ErrUnknownEvent, name, p.describe(), nameList(p.EventNames()))
}

// ClassOfEvent returns the class an event task is queued with: the most
// urgent class among the families it invalidates, so an event that touches
// a price is never stuck behind bulk work. Most urgent means the highest
// queue weight, then the most retries, then the first name.
func (p *Policy) ClassOfEvent(e *Event) *Class {
	var best *Class
	for _, inv := range e.Invalidates {
		f, ok := p.Families[inv.Family]
		if !ok {
			continue
		}
		c := p.ClassOf(f)
		if c == nil {
			continue
		}
		if best == nil || c.Weight > best.Weight ||
			c.Weight == best.Weight && (c.MaxRetry > best.MaxRetry || c.MaxRetry == best.MaxRetry && c.Name < best.Name) {
			best = c
		}
	}
	if best == nil {
		return p.Classes[p.DefaultClass]
	}
	return best
}

// EventNames returns the names of all events, sorted.
func (p *Policy) EventNames() []string {
	return slices.Sorted(maps.Keys(p.Events))
}

// EventsOf returns the names of the events that invalidate the family,
// sorted.
func (p *Policy) EventsOf(family string) []string {
	var names []string
	for name, e := range p.Events {
		for _, inv := range e.Invalidates {
			if inv.Family == family {
				names = append(names, name)
				break
			}
		}
	}
	slices.Sort(names)
	return names
}

// Resolve turns a publication of event name with attrs into the actions it
// triggers and the invalidations its values cannot render, each in policy
// order. attrs must hold exactly the event's declared attributes, none
// empty (ErrMissingParam, ErrUnknownParam, ErrEmptyParam): that is an error
// of the whole publication. A value outside a family's declaration, or one
// that would move its hash tag, refuses only that family's invalidation
// (see Refusal); the others resolve. Families in shadow or off mode are
// resolved too: applying the mode is the worker's business.
func (p *Policy) Resolve(name string, attrs map[string]string) ([]Action, []Refusal, error) {
	e, err := p.Event(name)
	if err != nil {
		return nil, nil, err
	}
	if err := e.checkAttrs(attrs); err != nil {
		return nil, nil, err
	}
	actions := make([]Action, 0, len(e.Invalidates))
	var refused []Refusal
	for _, inv := range e.Invalidates {
		f, err := p.Family(inv.Family)
		if err != nil {
			return nil, nil, fmt.Errorf("event %q: %w", name, err)
		}
		a := Action{Kind: inv.kind(f), Family: f, Params: make(map[string]string, len(f.Template.params))}
		for _, param := range f.Template.params {
			if attr := inv.source(param); attr != "" {
				a.Params[param] = attrs[attr]
			}
		}
		switch a.Kind {
		case ActionBump:
			a.Key, err = f.VersionKey(a.Params)
		case ActionPattern:
			a.Pattern, err = f.Pattern(a.Params)
		default:
			a.Key, err = f.Key(a.Params)
		}
		switch {
		case errors.Is(err, ErrInvalidParam) || errors.Is(err, ErrUnsafeHashTag):
			refused = append(refused, Refusal{Kind: a.Kind, Family: f, Err: err})
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("event %q: %w", name, err)
		}
		actions = append(actions, a)
	}
	return actions, refused, nil
}

// checkAttrs checks a publication's attributes against the declaration.
func (e *Event) checkAttrs(attrs map[string]string) error {
	for _, a := range slices.Sorted(maps.Keys(attrs)) {
		if !slices.Contains(e.Attributes, a) {
			return fmt.Errorf("event %q: %w %q: the event's attributes are %s",
				e.Name, ErrUnknownParam, a, nameList(e.Attributes))
		}
		if attrs[a] == "" {
			return fmt.Errorf("event %q: %w for attribute %q: give the value the write changed",
				e.Name, ErrEmptyParam, a)
		}
	}
	for _, a := range e.Attributes {
		if _, ok := attrs[a]; !ok {
			return fmt.Errorf("event %q: %w: attribute %q is required (attributes: %s)",
				e.Name, ErrMissingParam, a, nameList(e.Attributes))
		}
	}
	return nil
}
