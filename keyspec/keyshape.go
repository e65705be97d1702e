package keyspec

import "strings"

// A family's keys are literal text and parameter values in a fixed order.
// Before the overlap checks intersect two families' key automata, they
// compare that order: literal text that differs where both keys must hold
// it (a different prefix, or "p0" against "p1" between the same ':'s)
// proves the families disjoint at once. Most pairs of a policy differ so,
// which keeps loading a policy of hundreds of families cheap; the few
// pairs left are intersected exactly.

// keyPart is a piece of a key: literal bytes, or a parameter's value.
type keyPart struct {
	lit   string
	val   *nfa // the values' automaton; nil for literal bytes
	colon bool // some value may hold ':'
}

// templateParts returns the parts of the family's template: the values in
// given as literal bytes, the other parameters by their declaration, or as
// lang says when they have none.
//
// A declaration stands for its non-empty values, the ones Key renders,
// except in langGlob: that is a pattern delete, and its Matcher keeps
// every value the declaration matches, the empty one too.
func (f *Family) templateParts(given map[string]string, lang valueLang) []keyPart {
	var parts []keyPart
	for _, s := range f.Template.segs {
		if !s.isParam {
			parts = append(parts, keyPart{lit: s.text})
			continue
		}
		tagged := s.text == f.HashTag
		if tagged {
			parts = append(parts, keyPart{lit: "{"})
		}
		v, isGiven := given[s.text]
		switch d := f.decls[s.text]; {
		case isGiven:
			parts = append(parts, keyPart{lit: v})
		case d != nil && lang == langGlob:
			parts = append(parts, keyPart{val: d.nfa, colon: d.colon})
		case d != nil:
			parts = append(parts, keyPart{val: d.key, colon: d.colon})
		case lang == langConv && tagged:
			set := notColon()
			set['{'>>6] &^= 1<<('{'&63) | 1<<('}'&63) // both in the second word
			parts = append(parts, keyPart{val: repeatNFA(set, true)})
		case lang == langConv:
			parts = append(parts, keyPart{val: repeatNFA(notColon(), true)})
		default:
			parts = append(parts, keyPart{val: repeatNFA(allBytes(), lang != langGlob), colon: true})
		}
		if tagged {
			parts = append(parts, keyPart{lit: "}"})
		}
	}
	return parts
}

// keyParts returns the parts of every key the family renders: its template
// for a delete family, its version and data keys (in that order) for a
// version family.
func (f *Family) keyParts(lang valueLang) [][]keyPart {
	t := f.templateParts(nil, lang)
	if f.Strategy != StrategyVersion {
		return [][]keyPart{t}
	}
	prefix := func() []keyPart {
		if f.HashTag != "" {
			return append([]keyPart(nil), t...)
		}
		p := append([]keyPart{{lit: "{"}}, t...)
		return append(p, keyPart{lit: "}"})
	}
	var digits byteSet
	for c := byte('0'); c <= '9'; c++ {
		digits.add(c)
	}
	ver := append(prefix(), keyPart{lit: versionKeySuffix})
	data := append(prefix(), keyPart{lit: dataKeyInfix}, keyPart{val: repeatNFA(digits, true)})
	return [][]keyPart{ver, data}
}

// partsNFA returns the automaton of the keys made of parts.
func partsNFA(parts []keyPart) *nfa {
	b := newNFABuilder()
	for _, p := range parts {
		if p.val == nil {
			b.lit(p.lit)
		} else {
			b.sub(p.val)
		}
	}
	return b.finish()
}

// repeatNFA returns the automaton of one or more bytes of set, or zero or
// more when !nonEmpty.
func repeatNFA(set byteSet, nonEmpty bool) *nfa {
	b := newNFABuilder()
	b.repeat(set, nonEmpty)
	return b.finish()
}

// keyShape is one kind of key of a family (its template, or a version
// family's version or data key) with what the pruning compares.
type keyShape struct {
	parts []keyPart
	// lit is the whole key when it holds no value.
	lit    string
	isLit  bool
	prefix string // literal bytes before the first value
	suffix string // literal bytes after the last value
	// fields are the key's parts split at each literal ':'. Before the
	// first field with a value that may hold ':' (firstWild), field i of
	// the template is field i of every key; after the last (lastWild),
	// the same holds counting from the end. -1 when no value may hold ':'.
	fields              []keyField
	firstWild, lastWild int

	n  *nfa   // built on first use
	ef *efNFA // built on first use
}

// keyField is the text between two ':' of a key: literal bytes and values.
type keyField struct {
	prefix, suffix string // literal bytes before the first value, after the last
	hasVal         bool   // when false, prefix is the whole field
}

func newKeyShape(parts []keyPart) *keyShape {
	s := &keyShape{parts: parts, firstWild: -1, lastWild: -1, isLit: true}
	var cur keyField
	for _, p := range parts {
		if p.val == nil {
			s.lit += p.lit
			if s.isLit {
				s.prefix += p.lit
			}
			s.suffix += p.lit
			for i, piece := range strings.Split(p.lit, ":") {
				if i > 0 {
					s.fields = append(s.fields, cur)
					cur = keyField{}
				}
				if !cur.hasVal {
					cur.prefix += piece
				}
				cur.suffix += piece
			}
			continue
		}
		s.isLit = false
		s.suffix = ""
		cur.hasVal = true
		cur.suffix = ""
		if p.colon {
			if s.firstWild < 0 {
				s.firstWild = len(s.fields)
			}
			s.lastWild = len(s.fields)
		}
	}
	s.fields = append(s.fields, cur)
	if s.isLit {
		s.prefix, s.suffix = s.lit, s.lit
	}
	return s
}

// nfa returns the automaton of the shape's keys.
func (s *keyShape) nfa() *nfa {
	if s.n == nil {
		s.n = partsNFA(s.parts)
	}
	return s.n
}

// efNFA returns the shape's automaton in the form intersect searches.
func (s *keyShape) efNFA() *efNFA {
	if s.ef == nil {
		s.ef = newEFNFA(s.nfa())
	}
	return s.ef
}

// disjoint reports whether no key has both shapes, judging by their
// literal text alone. false means only that the automata must decide.
func disjoint(a, b *keyShape) bool {
	if a.isLit && b.isLit {
		return a.lit != b.lit
	}
	if !prefixesMeet(a.prefix, b.prefix) || !suffixesMeet(a.suffix, b.suffix) {
		return true
	}
	// A shape without a value that may hold ':' has exactly its fields;
	// one with such a value has at least its own.
	if (a.firstWild < 0 && len(a.fields) < len(b.fields)) || (b.firstWild < 0 && len(b.fields) < len(a.fields)) {
		return true
	}
	for i := 0; i < len(a.fields) && i < len(b.fields); i++ {
		if i == a.firstWild || i == b.firstWild {
			break
		}
		if !fieldsMeet(a.fields[i], b.fields[i]) {
			return true
		}
	}
	for i := 0; ; i++ {
		ia, ib := len(a.fields)-1-i, len(b.fields)-1-i
		if ia < 0 || ib < 0 || ia == a.lastWild || ib == b.lastWild {
			break
		}
		if !fieldsMeet(a.fields[ia], b.fields[ib]) {
			return true
		}
	}
	return false
}

// fieldsMeet reports whether two fields, neither holding a value that may
// hold ':', can be the same text, judging by their literal text.
func fieldsMeet(a, b keyField) bool {
	if !a.hasVal && !b.hasVal {
		return a.prefix == b.prefix
	}
	return prefixesMeet(a.prefix, b.prefix) && suffixesMeet(a.suffix, b.suffix)
}

// prefixesMeet reports whether some string starts with both a and b.
func prefixesMeet(a, b string) bool { return strings.HasPrefix(a, b) || strings.HasPrefix(b, a) }

// suffixesMeet reports whether some string ends with both a and b.
func suffixesMeet(a, b string) bool { return strings.HasSuffix(a, b) || strings.HasSuffix(b, a) }
