package keyspec

import "fmt"

// checkOverlaps reports pairs of families whose keys can coincide.
//
// An error: two families that render the same key when values hold no ':'
// (what key conventions assume), or hold only what their declarations
// allow. Each would invalidate the other's entries, and a reader of one
// could be served the other's value.
//
// A warning: keys that coincide only when some undeclared value holds a
// ':'. No writer may ever render such a key, but a pattern delete cannot
// know: a glob '*' matches ':' too, and the worker filters SCAN's matches
// only by declarations (filtering on the convention would skip the keys of
// a value that does hold a ':', a lost invalidation). So "product:*", the
// pattern delete of "product:{id}", deletes every "product:{id}:details"
// key as well, until params.id is declared. The check is exact: it
// intersects the key languages with undeclared values as any bytes.
func (d *decoder) checkOverlaps(p *Policy) {
	names := p.FamilyNames()
	captures := map[string][]Capture{} // by the family whose delete captures
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
			if key, ok := overlap(fa, langConv, fb, langConv); ok {
				a, b := a, b
				// Reported at the later declaration, which usually is the new one.
				if at, bt := d.familyAt[a], d.familyAt[b]; at != nil && bt != nil && at.Line > bt.Line {
					a, b = b, a
				}
				d.errorf(d.familyAt[b], join("families", b),
					"can render the same key as family %q (for example %q), so each would invalidate the other's entries; make the literal text differ, e.g. a different prefix, or declare params that tell them apart",
					a, key)
				continue
			}
			anyKey, ok := overlap(fa, langAny, fb, langAny)
			if !ok {
				continue
			}
			// Say which delete captures which family's keys: the direction
			// in which the captured keys are ordinary ones (no ':' in their
			// values). Only if there is none, both: the pair is reported
			// either way.
			dirs := [][2]*Family{{fa, fb}, {fb, fa}}
			found := false
			for _, dir := range dirs {
				x, y := dir[0], dir[1]
				if x.Strategy == StrategyVersion {
					continue
				}
				if key, ok := overlap(x, langAny, y, langConv); ok {
					captures[x.Name] = append(captures[x.Name], Capture{Family: y.Name, Example: key})
					found = true
				}
			}
			for _, dir := range dirs {
				if x, y := dir[0], dir[1]; !found && x.Strategy != StrategyVersion {
					captures[x.Name] = append(captures[x.Name], Capture{Family: y.Name, Example: anyKey})
				}
			}
		}
	}
	for _, name := range names {
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
		hint := declareHint(f)
		if len(f.undeclared()) == 0 {
			hint = declareHint(others[1:]...)
		}
		d.warnf(d.familyAt[name], join("families", name),
			"a pattern delete of family %q (%s) also matches keys of %s %s, because an undeclared parameter matches any bytes, ':' too, and the worker would delete them with it; to keep it to its family, %s",
			name, f.wholePattern(), plural(len(caps), "family", "families"), joinAnd(list), hint)
	}
}

// plural picks the word for n things.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
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

// overlap reports whether some key is a key of family a, with undeclared
// values as la says, and of family b, as lb says; and one such key,
// preferring a version key over a data key.
func overlap(a *Family, la valueLang, b *Family, lb valueLang) (string, bool) {
	for _, sa := range a.keyNFAs(la) {
		for _, sb := range b.keyNFAs(lb) {
			if key, ok, decided := intersect(sa, sb); ok {
				if !decided {
					key = "(too complex to find one; simplify the declarations)"
				}
				return key, true
			}
		}
	}
	return "", false
}
