package keyspec

import (
	"fmt"
	"slices"
	"strings"
)

// valueLang says which bytes an undeclared parameter stands for when a
// family's keys are turned into an automaton. A declared parameter always
// stands for its declaration.
type valueLang int

const (
	// langConv: no ':' (nor a brace, in a hash tag), as key conventions
	// assume. The policy's collision errors use it.
	langConv valueLang = iota
	// langAny: any non-empty bytes, as Key accepts. Exact: the capture
	// warnings and "does this key fit family X" use it.
	langAny
	// langGlob: any bytes, empty too, exactly what a glob '*' matches.
	langGlob
)

// keyNFAs returns the automata of every key the family renders: its
// template for a delete family, its version and data keys (in that order)
// for a version family.
func (f *Family) keyNFAs(lang valueLang) []*nfa {
	var out []*nfa
	for _, parts := range f.keyParts(lang) {
		out = append(out, partsNFA(parts))
	}
	return out
}

// Matcher tells whether a key belongs to a family pattern delete, or to a
// family. A Redis glob cannot say "digits only" or "no ':'", so SCAN MATCH
// returns keys of other families too ("product:*" returns
// "product:7:price:EUR"); a Matcher holds the whole template with each
// parameter's declaration, and the worker deletes only the keys it
// matches. It works on bytes and is safe for concurrent use.
type Matcher struct {
	pattern string
	filters bool
	a       *automaton
}

// Matcher returns the matcher of a pattern delete of the family with these
// params: the template with the given values as literal bytes, and each
// parameter left out matching its declaration, or any bytes (as '*' does)
// when it has none. It refuses what Pattern refuses, with the same errors.
//
// Every key the family renders for these params matches, so filtering a
// scan with it never skips a key of the family. Matcher.Filters reports
// whether it can reject a key the pattern matches at all.
func (f *Family) Matcher(params map[string]string) (*Matcher, error) {
	pattern, err := f.Pattern(params)
	if err != nil {
		return nil, err
	}
	m := &Matcher{pattern: pattern}
	for _, name := range f.Template.params {
		if _, given := params[name]; !given && f.decls[name] != nil {
			m.filters = true
		}
	}
	m.a = newAutomaton(partsNFA(f.templateParts(params, langGlob)))
	return m, nil
}

// KeysMatcher returns a matcher of every key the family can render: Key's
// keys for a delete family, its version and data keys for a version
// family. Undeclared parameters match any non-empty bytes. Its Pattern is
// "".
func (f *Family) KeysMatcher() *Matcher {
	return &Matcher{filters: true, a: newAutomaton(union(f.keyNFAs(langAny)...))}
}

// Pattern returns the SCAN MATCH pattern the matcher refines.
func (m *Matcher) Pattern() string { return m.pattern }

// Filters reports whether the matcher can reject a key that its pattern
// matches: whether some parameter left out of the pattern has a
// declaration. When it is false the SCAN's matches are the family's keys,
// and a scan needs no filter.
func (m *Matcher) Filters() bool { return m.filters }

// Match reports whether key is one of the keys the matcher describes.
func (m *Matcher) Match(key string) bool { return m.a.match(key) }

// Capture is another family whose keys a family's pattern delete can also
// match.
type Capture struct {
	// Family is the other family's name.
	Family string
	// Example is a key of both, for messages.
	Example string
}

// Captures returns the other families of the policy whose keys the
// pattern delete of f with these params can match as well, sorted by name:
// keys that fit both f's pattern (after its declarations filter it) and the
// other family's template, with undeclared values taken as any bytes. It is
// exact: a family not listed has no key the delete can remove.
func (p *Policy) Captures(f *Family, params map[string]string) ([]Capture, error) {
	if _, err := f.Pattern(params); err != nil {
		return nil, err
	}
	c := newOverlapChecker(0)
	del := []*keyShape{newKeyShape(f.templateParts(params, langGlob))}
	var out []Capture
	for _, name := range p.FamilyNames() {
		o := p.Families[name]
		if name == f.Name || o.Template == nil {
			continue
		}
		// A pair too complex to decide counts as captured: the caller
		// then checks each key against o's keys, which is exact.
		if key, ok, decided := c.overlap(del, c.shapesOf(o, langAny)); ok || !decided {
			out = append(out, Capture{Family: name, Example: key})
		}
	}
	return out, nil
}

// undeclared returns the family's parameters without a declaration.
func (f *Family) undeclared() []string {
	var out []string
	for _, p := range f.Template.params {
		if f.decls[p] == nil {
			out = append(out, p)
		}
	}
	return out
}

// wholePattern is the pattern of a delete with every parameter left out,
// or the template when that pattern is refused, for messages.
func (f *Family) wholePattern() string {
	if pat, err := f.Pattern(nil); err == nil {
		return pat
	}
	return f.Template.String()
}

// declareHint suggests declarations for the parameters of fams that have
// none: "declare params.id of family product".
func declareHint(fams ...*Family) string {
	var parts []string
	for _, f := range fams {
		u := f.undeclared()
		if len(u) == 0 {
			continue
		}
		ps := make([]string, len(u))
		for i, p := range u {
			ps[i] = "params." + p
		}
		parts = append(parts, fmt.Sprintf("%s of family %q", joinAnd(ps), f.Name))
	}
	if len(parts) == 0 {
		return "make the declarations exclude each other's keys"
	}
	slices.Sort(parts)
	return "declare " + joinAnd(parts) + " (e.g. {match: '[0-9]+'}) so that no key fits both"
}

// joinAnd joins items as "a", "a and b" or "a, b and c".
func joinAnd(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

// DeleteMatcher matches the keys a family delete of params removes: the
// family's keys (Matcher), or for a version family its version keys
// (VersionKeysMatcher), whose deletion orphans the data under them. The
// worker, enqueue and policy doc ask it, so they agree on what a family
// delete of each strategy touches.
func (f *Family) DeleteMatcher(params map[string]string) (*Matcher, error) {
	if f.Strategy == StrategyVersion {
		return f.VersionKeysMatcher(params)
	}
	return f.Matcher(params)
}

// VersionKeysMatcher returns the matcher of a pattern delete of a version
// family's version keys: those of every entity whose parameters match
// params, the ones left out matching their declarations (or any bytes).
// Its Pattern is VersionKeyPattern's shape with the given values; it
// matches version keys only, never data keys.
//
// Deleting an entity's version key invalidates it as a bump does: the next
// bump or versioned read restarts the version VersionRestartMargin above
// the cache Redis's clock, above every version handed out, under the same
// terms as an evicted version key (see VersionRestartMargin). The worker
// runs such a delete for a DeleteFamily task of a version family, which
// invalidator cdc enqueues for a TRUNCATE. It refuses what Pattern refuses,
// and a delete family (ErrNotVersioned).
func (f *Family) VersionKeysMatcher(params map[string]string) (*Matcher, error) {
	if f.Strategy != StrategyVersion {
		return nil, fmt.Errorf("version keys matcher family %q: %w: its strategy is %q", f.Name, ErrNotVersioned, f.Strategy)
	}
	pat, err := f.pattern(params)
	if err != nil {
		return nil, err
	}
	parts := f.templateParts(params, langGlob)
	if f.HashTag == "" {
		pat = "{" + pat + "}"
		parts = append(append([]keyPart{{lit: "{"}}, parts...), keyPart{lit: "}"})
	}
	parts = append(parts, keyPart{lit: versionKeySuffix})
	// Always filtered: a '*' of the pattern takes '#' and '}' too.
	return &Matcher{pattern: pat + versionKeySuffix, filters: true, a: newAutomaton(partsNFA(parts))}, nil
}
