package keyspec

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// Policy is the set of freshness classes and key families an application
// declares, usually loaded from a policy file. Producers and workers must
// load the same policy: it decides which keys a family invalidation touches.
// A validated Policy is read-only and safe for concurrent use.
type Policy struct {
	// Source is the file name the policy was loaded from; "" if built in
	// code.
	Source string
	// DefaultClass is the class used for raw key deletes, which belong to no
	// family. It must exist in Classes.
	DefaultClass string
	// Classes by name.
	Classes map[string]*Class
	// Families by name.
	Families map[string]*Family
	// Events by name.
	Events map[string]*Event
	// Tables maps database tables, by "schema.table", to the events their
	// row changes publish (invalidator cdc); empty when the policy has no
	// tables section.
	Tables map[string]*Table

	// warns are the warnings found while loading; Warnings adds those
	// that are too costly to look for on every load.
	warns ValidationErrors
	// familyAt is where each family is declared in Source, for warnings.
	familyAt map[string]position
}

// position is a place in a policy file.
type position struct{ line, column int }

// Default returns the policy used when no policy file is given: no families
// (so only raw key deletes are possible) and one class "default" with every
// class default (queue "invalidator-default", no TTL, 10 retries, 30s
// timeout, backoff 250ms to 1m).
func Default() *Policy {
	c := NewClass(DefaultClassName)
	return &Policy{
		DefaultClass: c.Name,
		Classes:      map[string]*Class{c.Name: c},
		Families:     map[string]*Family{},
		Events:       map[string]*Event{},
		Tables:       map[string]*Table{},
	}
}

// Load reads and parses the policy file at path. A file that does not
// validate gives ValidationErrors listing every problem with its position.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates a policy file; source names it in errors and
// becomes Policy.Source. On failure the error is a ValidationErrors listing
// every problem found, each with file:line:column and a dotted field path,
// and the returned policy is nil.
func Parse(source string, data []byte) (*Policy, error) {
	d := &decoder{file: source}
	p := d.decode(data)
	if len(d.errs) > 0 {
		slices.SortStableFunc(d.errs, byPosition)
		return nil, d.errs
	}
	p.Source = source
	return p, nil
}

// Family returns the named family, or an error wrapping ErrUnknownFamily
// that names the family and the policy.
func (p *Policy) Family(name string) (*Family, error) {
	if f, ok := p.Families[name]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("%w %q in %s (declared: %s); declare it under families: or fix the name",
		ErrUnknownFamily, name, p.describe(), nameList(p.FamilyNames()))
}

// Class returns the named class, or an error wrapping ErrUnknownClass.
func (p *Policy) Class(name string) (*Class, error) {
	if c, ok := p.Classes[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("%w %q in %s (declared: %s); declare it under classes: or fix the name",
		ErrUnknownClass, name, p.describe(), nameList(p.ClassNames()))
}

// ClassOf returns the class of a family of this policy. A family without a
// class (built with NewFamily and no FamilyOptions.Class) gets the default
// class. It is never nil for a validated policy; for a hand-built policy it
// falls back to the default class, and is nil only if that is missing too.
func (p *Policy) ClassOf(f *Family) *Class {
	if c, ok := p.Classes[f.Class]; ok {
		return c
	}
	return p.Classes[p.DefaultClass]
}

// QueueWeights returns every queue a worker serves with its polling weight:
// each class's queue, or a sharded class's shard queues with the class's
// weight split across them, and its own queue too (see shardWeights). A
// queue shared by classes takes the highest of their weights. Without
// shards the weights are the classes' weights.
func (p *Policy) QueueWeights() map[string]int {
	return p.shardWeights()
}

// Queues returns the distinct queues of all classes (shard queues
// included), sorted. A worker must serve all of them, or tasks of some
// class would never run.
func (p *Policy) Queues() []string {
	return slices.Sorted(maps.Keys(p.QueueWeights()))
}

// ClassNames returns the names of all classes, sorted.
func (p *Policy) ClassNames() []string {
	return slices.Sorted(maps.Keys(p.Classes))
}

// FamilyNames returns the names of all families, sorted.
func (p *Policy) FamilyNames() []string {
	return slices.Sorted(maps.Keys(p.Families))
}

// AddFamily adds a family built with NewFamily, for policies built in code
// and tests. It refuses a duplicate name and a class the policy does not
// declare; a family without a class uses the default class.
func (p *Policy) AddFamily(f *Family) error {
	if _, dup := p.Families[f.Name]; dup {
		return fmt.Errorf("add family %q to %s: a family of that name exists", f.Name, p.describe())
	}
	if f.Class != "" {
		if _, err := p.Class(f.Class); err != nil {
			return fmt.Errorf("add family %q: %w", f.Name, err)
		}
	}
	if p.Families == nil {
		p.Families = make(map[string]*Family)
	}
	p.Families[f.Name] = f
	return nil
}

// describe names the policy in error messages.
func (p *Policy) describe() string {
	if p.Source == "" {
		return "the built-in policy"
	}
	return fmt.Sprintf("policy %q", p.Source)
}

// nameList formats names for error messages.
func nameList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
