package keyspec

import (
	"fmt"
	"regexp/syntax"
	"strings"
	"sync"
	"unicode/utf8"
)

// Param declares the values a template parameter takes. A declaration is
// what lets a pattern delete keep to its family: a Redis glob '*' matches
// any bytes, ':' too, so "product:*" also matches "product:7:price:EUR"; with
// id declared as [0-9]+ the worker deletes only the keys whose id matches.
//
// A declaration is a promise about every key of the family in the cache:
// keys are refused when rendered with a value that does not match, and a
// pattern delete skips keys whose value does not match. Declare only what
// every writer of the family's keys already holds to.
type Param struct {
	// Match is an RE2 regular expression (Go's regexp syntax) that every
	// value must match as a whole: it is anchored at both ends, so
	// "[0-9]+" means digits only. It is matched against the value's bytes:
	// write it in ASCII; '.' and negated classes such as [^:] match any
	// byte (but '\n', for '.'), so a multi-byte UTF-8 character counts as
	// several. Anchors and \b are not needed and not allowed.
	Match string
}

// maxParamInsts bounds the size of a compiled declaration, which keeps the
// policy's overlap checks fast ("[0-9a-f]{8}-[0-9a-f]{4}-..." of a UUID
// takes 38, "[a-z0-9-]{1,64}" 129).
const maxParamInsts = 300

// paramDecl is a compiled Param. Families of a policy share the
// declarations they spell alike.
type paramDecl struct {
	Param
	nfa *nfa // every value the expression matches
	key *nfa // the non-empty ones: the values Key renders
	// colon is whether a value may hold ':' (some byte the automaton
	// reads is one), which the overlap checks' pruning needs to know.
	colon bool

	// m is nfa with its DFA, built on the first match rather than at
	// load, which every worker start and CLI call pays.
	once sync.Once
	m    *automaton
}

// match reports whether v is a value the declaration allows.
func (d *paramDecl) match(v string) bool {
	d.once.Do(func() { d.m = newAutomaton(d.nfa) })
	return d.m.match(v)
}

// compileParam compiles a declaration, or returns a message that says what
// to fix.
func compileParam(p Param) (*paramDecl, string) {
	expr := p.Match
	if expr == "" {
		return nil, "match is empty; give a regular expression every value matches, e.g. '[0-9]+'"
	}
	for i := 0; i < len(expr); i++ {
		if expr[i] >= utf8.RuneSelf {
			return nil, fmt.Sprintf("match %q has a non-ASCII character; values are matched byte by byte, so write the expression in ASCII (a negated class such as [^:] matches any other byte)", expr)
		}
	}
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, fmt.Sprintf("match %q is not a valid regular expression: %s", expr, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	re = stripAnchors(re)
	if msg := checkRegexp(re, expr); msg != "" {
		return nil, msg
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, fmt.Sprintf("match %q: %v", expr, err)
	}
	if len(prog.Inst) > maxParamInsts {
		return nil, fmt.Sprintf("match %q is too large (%d instructions, at most %d); use a simpler expression, e.g. a character class with +", expr, len(prog.Inst), maxParamInsts)
	}
	n, msg := progNFA(prog, expr)
	if msg != "" {
		return nil, msg
	}
	d := &paramDecl{Param: p, nfa: n, key: n}
	if n.match("") {
		// The automata are small (maxParamInsts), so the product fits.
		if k := product(n, repeatNFA(allBytes(), true)); k != nil {
			d.key = k
		}
	}
	if !d.key.matchesSome() {
		return nil, fmt.Sprintf("match %q matches no value but the empty one, and parameter values are never empty", expr)
	}
	for _, nd := range n.nodes {
		if nd.consume && nd.set.has(':') {
			d.colon = true
		}
	}
	return d, ""
}

// stripAnchors drops a leading ^ and a trailing $: a declaration is
// anchored already, and people write them out of habit.
func stripAnchors(re *syntax.Regexp) *syntax.Regexp {
	isBegin := func(r *syntax.Regexp) bool { return r.Op == syntax.OpBeginText || r.Op == syntax.OpBeginLine }
	isEnd := func(r *syntax.Regexp) bool { return r.Op == syntax.OpEndText || r.Op == syntax.OpEndLine }
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 {
		return re
	}
	subs := re.Sub
	if isBegin(subs[0]) {
		subs = subs[1:]
	}
	if len(subs) > 1 && isEnd(subs[len(subs)-1]) {
		subs = subs[:len(subs)-1]
	}
	if len(subs) == len(re.Sub) {
		return re
	}
	out := *re
	out.Sub = subs
	if len(subs) == 1 {
		return subs[0]
	}
	return &out
}

// checkRegexp refuses what a byte-level, whole-value match cannot honour:
// anchors and word boundaries inside the expression, and classes that
// name some non-ASCII characters but not all of them (\pL, [\x{e9}]).
func checkRegexp(re *syntax.Regexp, expr string) string {
	switch re.Op {
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return fmt.Sprintf("match %q uses an anchor or \\b inside the expression; a declaration is matched against the whole value, so leave them out", expr)
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if r >= utf8.RuneSelf {
				return fmt.Sprintf("match %q has the non-ASCII character %q; values are matched byte by byte, so write the expression in ASCII", expr, r)
			}
		}
	case syntax.OpCharClass:
		fold := foldNo
		if re.Flags&syntax.FoldCase != 0 {
			fold = foldYes
		}
		if _, ok := nonASCII(re.Rune, fold); !ok {
			return fmt.Sprintf("match %q has a class with some non-ASCII characters; values are matched byte by byte, so use ASCII classes, or a negated class such as [^:] for any other byte", expr)
		}
	}
	for _, s := range re.Sub {
		if msg := checkRegexp(s, expr); msg != "" {
			return msg
		}
	}
	return ""
}

// Runes an ASCII letter folds to under (?i): a class such as (?i)[a-z]
// holds them, but they say nothing about the bytes >= 0x80 of a value.
const (
	longS  = 0x17f  // ſ, folds to s
	kelvin = 0x212a // K, folds to k
)

// How a class came to hold ſ and K, for nonASCII.
type foldMode int

const (
	foldNo     foldMode = iota // not under (?i): as every other non-ASCII rune
	foldYes                    // under (?i): as s and k
	foldEither                 // unknown (a compiled class that checkRegexp passed)
)

// nonASCII reports whether a class (rune pairs lo, hi) holds the bytes
// 0x80-0xff: it does when it holds every non-ASCII rune, as negated
// classes and '.' do, and does not when it holds none. ſ and K may differ
// from the others only as (?i) makes them, with s and k: Go's
// [^\x{17f}] refuses "ſ", which no class of bytes can say. Anything else
// (ok=false) has no meaning for bytes.
func nonASCII(pairs []rune, fold foldMode) (all, ok bool) {
	in := func(r rune) bool {
		for i := 0; i+1 < len(pairs); i += 2 {
			if pairs[i] <= r && r <= pairs[i+1] {
				return true
			}
		}
		return false
	}
	folded := [...]struct{ r, letter rune }{{longS, 's'}, {kelvin, 'k'}}
	var n, special int
	for i := 0; i+1 < len(pairs); i += 2 {
		if lo, hi := max(pairs[i], utf8.RuneSelf), pairs[i+1]; lo <= hi {
			n += int(hi-lo) + 1
		}
	}
	for _, f := range folded {
		if in(f.r) {
			special++
		}
	}
	total := int(utf8.MaxRune) - utf8.RuneSelf + 1
	switch n - special {
	case 0:
	case total - len(folded):
		all = true
	default:
		return false, false
	}
	for _, f := range folded {
		asOthers, asLetter := in(f.r) == all, in(f.r) == in(f.letter)
		switch {
		case fold == foldNo && !asOthers, fold == foldYes && !asLetter, !asOthers && !asLetter:
			return false, false
		}
	}
	return all, true
}

// progNFA turns a compiled regexp into a byte-level nfa.
func progNFA(prog *syntax.Prog, expr string) (*nfa, string) {
	// Node i is instruction i; the last node is the accept node.
	a := &nfa{nodes: make([]nfaNode, len(prog.Inst)+2)}
	accept := int32(len(prog.Inst) + 1)
	a.accept = accept
	id := func(i uint32) int32 { return int32(i) + 1 }
	a.nodes[0] = nfaNode{eps: []int32{id(uint32(prog.Start))}}
	for i, in := range prog.Inst {
		n := &a.nodes[id(uint32(i))]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			n.eps = []int32{id(in.Out), id(in.Arg)}
		case syntax.InstCapture, syntax.InstNop:
			n.eps = []int32{id(in.Out)}
		case syntax.InstMatch:
			n.eps = []int32{accept}
		case syntax.InstFail:
		case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			n.consume, n.out = true, id(in.Out)
			high := false
			switch {
			case in.Op == syntax.InstRuneAny:
				n.set = allBytes()
			case in.Op == syntax.InstRuneAnyNotNL:
				n.set = allBytes()
				n.set[0] &^= 1 << '\n'
			default:
				for c := range utf8.RuneSelf {
					if in.MatchRune(rune(c)) {
						n.set.add(byte(c))
					}
				}
			}
			if in.Op == syntax.InstRune && len(in.Rune) > 1 {
				all, ok := nonASCII(in.Rune, foldEither)
				if !ok {
					return nil, fmt.Sprintf("match %q has a class with some non-ASCII characters; use ASCII classes, or a negated class such as [^:]", expr)
				}
				high = all
			}
			if high {
				for c := utf8.RuneSelf; c < 256; c++ {
					n.set.add(byte(c))
				}
			}
		default:
			return nil, fmt.Sprintf("match %q uses an anchor or \\b inside the expression; a declaration is matched against the whole value, so leave them out", expr)
		}
	}
	return a, ""
}

// allBytes is the set of every byte.
func allBytes() byteSet {
	var s byteSet
	s.addAll()
	return s
}

// notColon is the set of every byte but ':'.
func notColon() byteSet {
	s := allBytes()
	s[':'>>6] &^= 1 << (':' & 63)
	return s
}

// commonValue returns a shortest non-empty value that every declaration
// matches, and false when there is none. It answers true, with "", when
// the declarations are too large to decide: the caller must not refuse
// what it cannot prove wrong.
func commonValue(decls []*paramDecl) (string, bool) {
	b := newNFABuilder()
	b.repeat(allBytes(), true)
	all := b.finish()
	for _, d := range decls {
		if all = product(all, d.nfa); all == nil {
			return "", true
		}
	}
	key, ok, _ := intersect(all, all)
	return key, ok
}
