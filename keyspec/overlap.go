package keyspec

import (
	"fmt"
	"slices"
)

// checkOverlaps reports pairs of families whose keys can coincide. Two
// families sharing a key would invalidate each other's entries, and a
// reader of one could be served the other's value.
//
// Parameter values may hold any bytes, so "product:{sku}:details" and
// "product:{sku}:price:{currency}" could in theory both render
// "product:a:price:details". The check therefore assumes what key
// conventions assume: a value never contains the ':' delimiter. Under that
// assumption it is exact: it intersects the two key languages.
func (d *decoder) checkOverlaps(p *Policy) {
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
			if key, ok := overlap(fa, fb); ok {
				// Reported at the later declaration, which usually is the new one.
				if at, bt := d.familyAt[a], d.familyAt[b]; at != nil && bt != nil && at.Line > bt.Line {
					a, b = b, a
				}
				d.errorf(d.familyAt[b], join("families", b),
					"can render the same key as family %q (for example %q), so each would invalidate the other's entries; make the literal text differ, e.g. a different prefix",
					a, key)
			}
		}
	}
}

// checkWildcardReach warns when an event's pattern delete can also match
// keys of another family. A SCAN MATCH '*' matches any bytes, ':' too, so
// "product:*" deletes every "product:{id}:reviews" key as well. That cannot
// be expressed tighter in a Redis glob, and filtering matches by the
// template would skip keys whose values hold a ':', a lost invalidation; so
// the over-reach stays, and the policy's author is told.
func (d *decoder) checkWildcardReach(p *Policy) {
	for _, ename := range p.EventNames() {
		e := p.Events[ename]
		for i, inv := range e.Invalidates {
			f := p.Families[inv.Family]
			if f == nil || f.Template == nil || inv.kind(f) != ActionPattern {
				continue
			}
			pat := patternShape(f, inv.Wildcard)
			for _, oname := range p.FamilyNames() {
				o := p.Families[oname]
				if oname == f.Name || o.Template == nil {
					continue
				}
				for _, os := range shapes(o) {
					if key, ok := intersect(pat, os); ok {
						d.warnf(d.eventAt[ename], fmt.Sprintf("%s[%d]", join(join("events", ename), "invalidates"), i),
							"the pattern delete of family %q also matches keys of family %q (for example %q), because '*' matches ':' too; they will be deleted with it",
							f.Name, oname, key)
						break
					}
				}
			}
		}
	}
}

// patternShape is the shape of a family's SCAN pattern with the wildcard
// parameters matching any bytes.
func patternShape(f *Family, wildcard []string) []elem {
	any := func(byte) bool { return true }
	notDelim := func(c byte) bool { return c != ':' }
	inTag := func(c byte) bool { return c != ':' && c != '{' && c != '}' }
	var out []elem
	for _, s := range f.Template.segs {
		switch {
		case !s.isParam:
			for i := range len(s.text) {
				out = append(out, elem{lit: s.text[i]})
			}
		case slices.Contains(wildcard, s.text):
			if s.text == f.HashTag {
				out = append(out, elem{lit: '{'}, elem{param: any}, elem{lit: '}'})
			} else {
				out = append(out, elem{param: any})
			}
		case s.text == f.HashTag:
			out = append(out, elem{lit: '{'}, elem{param: inTag}, elem{lit: '}'})
		default:
			out = append(out, elem{param: notDelim})
		}
	}
	return out
}

// checkUntriggered warns about families no event invalidates, once a policy
// uses events at all.
func (d *decoder) checkUntriggered(p *Policy) {
	if len(p.Events) == 0 {
		return
	}
	for _, name := range p.FamilyNames() {
		if len(p.EventsOf(name)) == 0 {
			d.warnf(d.familyAt[name], join("families", name),
				"no event invalidates family %q; only direct enqueue calls (keys, family, bump) do, so a write site that forgets one leaves it stale", name)
		}
	}
}

// elem is one element of a key shape: a literal byte, or a parameter that
// matches one or more bytes that allow accepts.
type elem struct {
	lit   byte
	param func(byte) bool
}

// shapes returns the key shapes of a family: its template for a delete
// family, its version and data keys for a version family.
func shapes(f *Family) [][]elem {
	notDelim := func(c byte) bool { return c != ':' }
	inTag := func(c byte) bool { return c != ':' && c != '{' && c != '}' }
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	lits := func(s string) []elem {
		out := make([]elem, len(s))
		for i := range len(s) {
			out[i] = elem{lit: s[i]}
		}
		return out
	}
	var base []elem
	for _, s := range f.Template.segs {
		switch {
		case !s.isParam:
			base = append(base, lits(s.text)...)
		case s.text == f.HashTag:
			base = append(base, elem{lit: '{'}, elem{param: inTag}, elem{lit: '}'})
		default:
			base = append(base, elem{param: notDelim})
		}
	}
	if f.Strategy != StrategyVersion {
		return [][]elem{base}
	}
	if f.HashTag == "" {
		base = append(append(lits("{"), base...), lits("}")...)
	}
	ver := append(append([]elem{}, base...), lits(versionKeySuffix)...)
	data := append(append(append([]elem{}, base...), lits(dataKeyInfix)...), elem{param: digit})
	return [][]elem{ver, data}
}

// overlap reports whether some key fits a shape of both families, and one
// such key.
func overlap(a, b *Family) (string, bool) {
	for _, sa := range shapes(a) {
		for _, sb := range shapes(b) {
			if key, ok := intersect(sa, sb); ok {
				return key, true
			}
		}
	}
	return "", false
}

// pos is a position in a shape: before element i, or inside parameter i
// after at least one byte.
type pos struct {
	i  int
	in bool
}

// closure adds the positions reachable without reading: leaving a
// parameter that has read a byte.
func closure(s []elem, p pos) []pos {
	if p.in {
		return []pos{p, {i: p.i + 1}}
	}
	return []pos{p}
}

// step returns the positions after reading c at p.
func step(s []elem, p pos, c byte) []pos {
	if p.i >= len(s) {
		return nil
	}
	e := s[p.i]
	if e.param == nil {
		if !p.in && e.lit == c {
			return closure(s, pos{i: p.i + 1})
		}
		return nil
	}
	if e.param(c) {
		return closure(s, pos{i: p.i, in: true})
	}
	return nil
}

// intersect searches the product of the two shapes' automata breadth
// first, so the example key it returns is a shortest one.
func intersect(a, b []elem) (string, bool) {
	// The bytes that matter: every literal, plus bytes a parameter accepts
	// that no literal uses (a letter and a digit stand for all of them).
	// The stand-ins come first, so example keys read "user:x".
	alphabet := []byte{}
	seen := map[byte]bool{}
	for _, c := range []byte("x0") {
		seen[c] = true
		alphabet = append(alphabet, c)
	}
	for _, s := range [][]elem{a, b} {
		for _, e := range s {
			if e.param == nil && !seen[e.lit] {
				seen[e.lit] = true
				alphabet = append(alphabet, e.lit)
			}
		}
	}
	type state struct{ pa, pb pos }
	type visit struct {
		prev state
		c    byte
	}
	start := state{}
	from := map[state]visit{start: {}}
	queue := []state{start}
	for len(queue) > 0 {
		st := queue[0]
		queue = queue[1:]
		if accepts(a, st.pa) && accepts(b, st.pb) {
			var key []byte
			for cur := st; cur != start; cur = from[cur].prev {
				key = append(key, from[cur].c)
			}
			for i, j := 0, len(key)-1; i < j; i, j = i+1, j-1 {
				key[i], key[j] = key[j], key[i]
			}
			return string(key), true
		}
		for _, c := range alphabet {
			for _, na := range step(a, st.pa, c) {
				for _, nb := range step(b, st.pb, c) {
					next := state{na, nb}
					if _, ok := from[next]; !ok {
						from[next] = visit{prev: st, c: c}
						queue = append(queue, next)
					}
				}
			}
		}
	}
	return "", false
}

// accepts reports whether a key may end at p.
func accepts(s []elem, p pos) bool { return p.i == len(s) && !p.in }
