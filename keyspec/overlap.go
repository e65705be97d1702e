package keyspec

import (
	"fmt"
	"slices"
)

// Two checks compare the key languages of every pair of families.
//
// An error, at load: two families that render the same key when values
// hold no ':' (what key conventions assume), or hold only what their
// declarations allow. Each would invalidate the other's entries, and a
// reader of one could be served the other's value. It runs on every load
// (worker start, SIGHUP, enqueue.New, each CLI enqueue), so it must be
// cheap: disjoint (keyshape.go) settles most pairs by their literal text,
// and only the rest are intersected.
//
// A warning, in Policy.Warnings (lint, not load): a pattern delete that
// also matches keys of another family. A glob '*' matches any bytes, ':'
// too, and the worker filters SCAN's matches only by declarations
// (filtering on the convention would skip the keys of a value that does
// hold a ':', a lost invalidation). So "product:*", the pattern delete of
// "product:{id}", deletes every "product:{id}:details" key as well, until
// params.id is declared. The check is exact: it intersects what the
// worker deletes (the glob, where '*' matches no bytes too, filtered by
// the declarations) with every key the other family renders.

// overlapChecker intersects the key languages of a policy's families. It
// builds each family's shapes once per language, and the automata of a
// shape only when the pruning cannot decide. It is not safe for concurrent
// use.
type overlapChecker struct {
	shapes map[shapeID][]*keyShape
	s      *searcher
}

type shapeID struct {
	f    *Family
	lang valueLang
}

// newOverlapChecker returns a checker whose searches visit at most limit
// pairs of states each; 0 means maxSearchStates.
func newOverlapChecker(limit int) *overlapChecker {
	s := newSearcher()
	if limit > 0 {
		s.limit = limit
	}
	return &overlapChecker{shapes: map[shapeID][]*keyShape{}, s: s}
}

// shapesOf returns the shapes of every key f renders, undeclared values
// taken as lang says.
func (c *overlapChecker) shapesOf(f *Family, lang valueLang) []*keyShape {
	id := shapeID{f, lang}
	if ss, ok := c.shapes[id]; ok {
		return ss
	}
	var ss []*keyShape
	for _, parts := range f.keyParts(lang) {
		ss = append(ss, newKeyShape(parts))
	}
	c.shapes[id] = ss
	return ss
}

// overlap reports whether some key has one of the shapes as and one of the
// shapes bs, and a shortest such key for the first pair of shapes that
// has one (a version key before a data key). decided is false when no key
// was found and some pair was too complex to decide.
func (c *overlapChecker) overlap(as, bs []*keyShape) (key string, ok, decided bool) {
	decided = true
	for _, sa := range as {
		for _, sb := range bs {
			if disjoint(sa, sb) {
				continue
			}
			key, ok, dec := c.s.intersect(sa.efNFA(), sb.efNFA())
			switch {
			case !dec:
				decided = false
			case ok:
				return key, true, true
			}
		}
	}
	return "", false, decided
}

// families is overlap for the keys of two families.
func (c *overlapChecker) families(a *Family, la valueLang, b *Family, lb valueLang) (string, bool, bool) {
	return c.overlap(c.shapesOf(a, la), c.shapesOf(b, lb))
}

// deletes is overlap for the keys a pattern delete of x (its whole
// pattern) removes and the keys y renders.
//
// The delete is the glob, where '*' matches no bytes too, filtered by the
// declarations, which may match the empty value: "a:*" deletes the key
// "a:" of a family "a:".
func (c *overlapChecker) deletes(x, y *Family, ly valueLang) (string, bool, bool) {
	key, ok, decided := c.overlap(c.shapesOf(x, langGlob), c.shapesOf(y, ly))
	if ok {
		// A shortest key often has empty wildcards ("obj:::p0"); one
		// with a value for each reads better, where there is one.
		if k, ok, _ := c.overlap(c.shapesOf(x, langAny), c.shapesOf(y, ly)); ok {
			key = k
		}
	}
	return key, ok, decided
}

// checkCollisions refuses pairs of families that render the same key, at
// load. A pair too complex to decide is a warning: refusing it would
// refuse a policy that may be fine, and passing it silently would hide a
// collision that may be there.
func (d *decoder) checkCollisions(p *Policy) {
	c := newOverlapChecker(d.searchLimit)
	names := p.FamilyNames()
	for i, a := range names {
		fa := p.Families[a]
		if fa.Template == nil {
			continue
		}
		for _, b := range names[i+1:] {
			fb := p.Families[b]
			if fb.Template == nil {
				continue
			}
			key, ok, decided := c.families(fa, langConv, fb, langConv)
			if !ok && decided {
				continue
			}
			a, b := a, b
			// Reported at the later declaration, which usually is the new one.
			if at, bt := d.familyAt[a], d.familyAt[b]; at != nil && bt != nil && at.Line > bt.Line {
				a, b = b, a
			}
			if ok {
				d.errorf(d.familyAt[b], join("families", b),
					"can render the same key as family %q (for example %q), so each would invalidate the other's entries; make the literal text differ, e.g. a different prefix, or declare params that tell them apart",
					a, key)
				continue
			}
			d.warnf(d.familyAt[b], join("families", b),
				"could not decide whether family %q can render the same key as family %q: their keys are too complex to compare; simplify the declarations (params) of %q and %q, or make their literal text differ",
				b, a, b, a)
		}
	}
}

// Warnings returns the problems that do not stop the policy from loading,
// sorted by their position in the file: families no event invalidates,
// event attributes no template uses, pairs of families too complex to
// compare, and families whose pattern deletes also match other families'
// keys. Policy lint prints them.
//
// It intersects the key languages of the families that may share keys,
// which takes up to seconds for hundreds of families: Parse does not, so
// call Warnings once and keep the result.
func (p *Policy) Warnings() ValidationErrors {
	return p.warnings(0)
}

// warnings is Warnings with a bound on each search; 0 means the default.
func (p *Policy) warnings(limit int) ValidationErrors {
	out := slices.Clone(p.warns)
	out = append(out, p.captureWarnings(limit)...)
	out = append(out, p.untriggered()...)
	slices.SortStableFunc(out, byPosition)
	return out
}

// byPosition orders problems by their position in the file.
func byPosition(a, b ValidationError) int {
	if a.Line != b.Line {
		return a.Line - b.Line
	}
	return a.Column - b.Column
}

// warnAt builds a warning about the family name.
func (p *Policy) warnAt(name, format string, args ...any) ValidationError {
	at := p.familyAt[name]
	return ValidationError{File: p.Source, Line: at.line, Column: at.column,
		Field: join("families", name), Msg: fmt.Sprintf(format, args...)}
}

// captureWarnings warns about each family whose pattern delete also
// matches keys of other families, by name.
func (p *Policy) captureWarnings(limit int) ValidationErrors {
	captures, undecided := p.captureMap(limit)
	var out ValidationErrors
	for _, u := range undecided {
		x, y := p.Families[u[0]], u[1]
		out = append(out, p.warnAt(x.Name,
			"could not decide whether a pattern delete of family %q (%s) also matches keys of family %q: their keys are too complex to compare; simplify the declarations (params) of %q and %q",
			x.Name, x.wholePattern(), y, x.Name, y))
	}
	for _, name := range p.FamilyNames() {
		caps := captures[name]
		if len(caps) == 0 {
			continue
		}
		f := p.Families[name]
		var list []string
		others := []*Family{f}
		for _, c := range caps {
			list = append(list, fmt.Sprintf("%q (for example %q)", c.Family, c.Example))
			others = append(others, p.Families[c.Family])
		}
		why := "an undeclared parameter matches any bytes, ':' too"
		hint := declareHint(f)
		if len(f.undeclared()) == 0 {
			why = "its declarations match them"
			hint = declareHint(others[1:]...)
		}
		out = append(out, p.warnAt(name,
			"a pattern delete of family %q (%s) also matches keys of %s %s, because %s, and the worker would delete them with it; to keep it to its family, %s",
			name, f.wholePattern(), plural(len(caps), "family", "families"), joinAnd(list), why, hint))
	}
	return out
}

// captureMap returns, by family, the other families whose keys its
// pattern delete also matches. For each pair it says which delete
// captures which family's keys: the direction in which the captured keys
// are ordinary ones (no ':' in their values); only if there is none, any
// keys. undecided lists the deletes (family, other family) too complex
// to tell either way.
func (p *Policy) captureMap(limit int) (captures map[string][]Capture, undecided [][2]string) {
	c := newOverlapChecker(limit)
	names := p.FamilyNames()
	captures = map[string][]Capture{} // by the family whose delete captures
	for i, a := range names {
		fa := p.Families[a]
		if fa.Template == nil {
			continue
		}
		for _, b := range names[i+1:] {
			fb := p.Families[b]
			if fb.Template == nil {
				continue
			}
			if _, ok, _ := c.families(fa, langConv, fb, langConv); ok {
				continue // a collision, which Parse refuses
			}
			var dirs [][2]*Family
			for _, dir := range [][2]*Family{{fa, fb}, {fb, fa}} {
				if dir[0].Strategy != StrategyVersion { // never pattern-deleted
					dirs = append(dirs, dir)
				}
			}
			found := false
			unsure := map[*Family]bool{}
			for _, lang := range []valueLang{langConv, langAny} {
				for _, dir := range dirs {
					x, y := dir[0], dir[1]
					key, ok, decided := c.deletes(x, y, lang)
					if !decided {
						unsure[x] = true
					}
					if ok {
						delete(unsure, x)
						if lang == langAny {
							// One example for both directions where
							// there is one: a key both families render.
							if k, ok, _ := c.families(fa, langAny, fb, langAny); ok {
								key = k
							}
						}
						captures[x.Name] = append(captures[x.Name], Capture{Family: y.Name, Example: key})
						found = true
					}
				}
				if found {
					break
				}
			}
			for _, dir := range dirs {
				if x, y := dir[0], dir[1]; unsure[x] {
					undecided = append(undecided, [2]string{x.Name, y.Name})
				}
			}
		}
	}
	return captures, undecided
}

// plural picks the word for n things.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// untriggered warns about families no event invalidates, once a policy
// uses events at all.
func (p *Policy) untriggered() ValidationErrors {
	if len(p.Events) == 0 {
		return nil
	}
	var out ValidationErrors
	for _, name := range p.FamilyNames() {
		if len(p.EventsOf(name)) == 0 {
			out = append(out, p.warnAt(name,
				"no event invalidates family %q; only direct enqueue calls (keys, family, bump) do, so a write site that forgets one leaves it stale", name))
		}
	}
	return out
}
