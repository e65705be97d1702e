package keyspec

import (
	"encoding/binary"
	"slices"
)

// A key is bytes, so the key languages of families (which keys a template
// can render, which keys a pattern delete may remove) are automata over
// bytes, not runes: Go's regexp package decodes UTF-8 and would read an
// invalid byte, or a character split between a value and the literal text
// after it, differently from the bytes Redis compares.

// byteSet is a set of bytes.
type byteSet [4]uint64

func (s *byteSet) add(c byte)      { s[c>>6] |= 1 << (c & 63) }
func (s *byteSet) has(c byte) bool { return s[c>>6]&(1<<(c&63)) != 0 }
func (s *byteSet) addAll()         { *s = byteSet{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)} }
func (s byteSet) and(o byteSet) byteSet {
	return byteSet{s[0] & o[0], s[1] & o[1], s[2] & o[2], s[3] & o[3]}
}
func (s byteSet) empty() bool { return s[0]|s[1]|s[2]|s[3] == 0 }

// pick returns a member that reads well in an example key: 'x', then '0',
// then a letter or digit, then any printable byte, then the lowest.
func (s byteSet) pick() (byte, bool) {
	for _, c := range []byte("x0") {
		if s.has(c) {
			return c, true
		}
	}
	for _, r := range [][2]byte{{'a', 'z'}, {'A', 'Z'}, {'0', '9'}, {'!', '~'}, {0, 255}} {
		for c := int(r[0]); c <= int(r[1]); c++ {
			if s.has(byte(c)) {
				return byte(c), true
			}
		}
	}
	return 0, false
}

// nfa is a byte-level automaton in Thompson's form: node 0 is the start,
// a node either consumes one byte of its set and moves to out, or moves
// without reading to any of eps. A string matches when some path that
// reads it ends at accept.
type nfa struct {
	nodes  []nfaNode
	accept int32
}

type nfaNode struct {
	consume bool
	set     byteSet // bytes a consuming node reads
	out     int32   // where a consuming node goes
	eps     []int32 // where a non-consuming node may go
}

// nfaBuilder concatenates pieces into one nfa. cur is the node the next
// piece starts from: a non-consuming node with no successors yet.
type nfaBuilder struct {
	n   nfa
	cur int32
}

func newNFABuilder() *nfaBuilder {
	b := &nfaBuilder{}
	b.cur = b.node(nfaNode{})
	return b
}

func (b *nfaBuilder) node(n nfaNode) int32 {
	b.n.nodes = append(b.n.nodes, n)
	return int32(len(b.n.nodes) - 1)
}

func (b *nfaBuilder) link(from, to int32) {
	b.n.nodes[from].eps = append(b.n.nodes[from].eps, to)
}

// lit appends literal bytes.
func (b *nfaBuilder) lit(s string) {
	for i := 0; i < len(s); i++ {
		var set byteSet
		set.add(s[i])
		b.class(set)
	}
}

// class appends one byte of set.
func (b *nfaBuilder) class(set byteSet) {
	next := b.node(nfaNode{})
	c := b.node(nfaNode{consume: true, set: set, out: next})
	b.link(b.cur, c)
	b.cur = next
}

// repeat appends one or more bytes of set, or zero or more when !nonEmpty.
func (b *nfaBuilder) repeat(set byteSet, nonEmpty bool) {
	loop := b.node(nfaNode{})
	c := b.node(nfaNode{consume: true, set: set, out: loop})
	next := b.node(nfaNode{})
	b.link(b.cur, c)
	if !nonEmpty {
		b.link(b.cur, next)
	}
	b.link(loop, c)
	b.link(loop, next)
	b.cur = next
}

// sub appends a copy of a whole automaton.
func (b *nfaBuilder) sub(a *nfa) {
	off := int32(len(b.n.nodes))
	for _, n := range a.nodes {
		m := nfaNode{consume: n.consume, set: n.set, out: n.out + off}
		for _, e := range n.eps {
			m.eps = append(m.eps, e+off)
		}
		b.n.nodes = append(b.n.nodes, m)
	}
	b.link(b.cur, off)
	b.cur = a.accept + off
}

func (b *nfaBuilder) finish() *nfa {
	b.n.accept = b.cur
	return &b.n
}

// union returns an automaton of the strings any of as matches.
func union(as ...*nfa) *nfa {
	if len(as) == 1 {
		return as[0]
	}
	b := newNFABuilder()
	start := b.cur
	accept := b.node(nfaNode{})
	for _, a := range as {
		b.cur = start
		b.sub(a)
		b.link(b.cur, accept)
	}
	b.cur = accept
	return b.finish()
}

// closure adds to set every node reachable from the nodes in stack
// without reading, and returns it; seen marks the members of set.
func (a *nfa) closure(set []int32, stack []int32, seen []bool) []int32 {
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, j := range a.nodes[i].eps {
			if !seen[j] {
				seen[j] = true
				set = append(set, j)
				stack = append(stack, j)
			}
		}
	}
	return set
}

// match runs the automaton on s by simulating it: no tables, a cost of
// O(len(s) * nodes). The DFA below is the fast path.
func (a *nfa) match(s string) bool {
	seen := make([]bool, len(a.nodes))
	seen[0] = true
	cur := a.closure([]int32{0}, []int32{0}, seen)
	var next []int32
	for i := 0; i < len(s) && len(cur) > 0; i++ {
		clear(seen)
		next = next[:0]
		for _, n := range cur {
			nd := &a.nodes[n]
			if nd.consume && nd.set.has(s[i]) && !seen[nd.out] {
				seen[nd.out] = true
				next = append(next, nd.out)
			}
		}
		next = a.closure(next, slices.Clone(next), seen)
		cur, next = next, cur
	}
	return slices.Contains(cur, a.accept)
}

// matchesSome reports whether the automaton matches some string: whether
// its accept node is reachable.
func (a *nfa) matchesSome() bool {
	seen := make([]bool, len(a.nodes))
	seen[0] = true
	stack := []int32{0}
	for len(stack) > 0 {
		n := &a.nodes[stack[len(stack)-1]]
		stack = stack[:len(stack)-1]
		next := n.eps
		if n.consume && !n.set.empty() {
			next = []int32{n.out}
		}
		for _, m := range next {
			if !seen[m] {
				seen[m] = true
				stack = append(stack, m)
			}
		}
	}
	return seen[a.accept]
}

// maxDFAStates bounds the table a matcher builds. Past it the matcher
// simulates the automaton instead: slower, never wrong.
const maxDFAStates = 2048

// dfa is the deterministic form of an nfa: state 0 is the start, and
// trans[s*nclass + class[c]] is where state s goes on byte c, as that
// state's offset in trans (its number times nclass), or -1 when no match
// is possible any more.
type dfa struct {
	class  [256]uint8
	nclass int
	trans  []int32
	accept []bool
}

// compileDFA builds the DFA of a by subset construction, or returns nil
// when it would have more than maxDFAStates states.
func compileDFA(a *nfa) *dfa {
	d := &dfa{}
	// Bytes that every consuming node treats alike share a class, so a
	// state needs one entry per class, not per byte.
	var sets []byteSet
	for _, n := range a.nodes {
		if n.consume && !slices.Contains(sets, n.set) {
			sets = append(sets, n.set)
		}
	}
	sig := map[string]uint8{}
	key := make([]byte, len(sets))
	for c := 0; c < 256; c++ {
		for i, s := range sets {
			key[i] = 0
			if s.has(byte(c)) {
				key[i] = 1
			}
		}
		id, ok := sig[string(key)]
		if !ok {
			id = uint8(len(sig))
			sig[string(key)] = id
		}
		d.class[c] = id
	}
	d.nclass = len(sig)
	rep := make([]byte, d.nclass) // one byte of each class
	for c := 255; c >= 0; c-- {
		rep[d.class[c]] = byte(c)
	}

	seen := make([]bool, len(a.nodes))
	encode := func(set []int32) string {
		slices.Sort(set)
		b := make([]byte, 0, 4*len(set))
		for _, n := range set {
			b = binary.LittleEndian.AppendUint32(b, uint32(n))
		}
		return string(b)
	}
	ids := map[string]int32{}
	var states [][]int32
	add := func(set []int32) int32 {
		k := encode(set)
		if id, ok := ids[k]; ok {
			return id
		}
		id := int32(len(states))
		ids[k] = id
		states = append(states, set)
		d.accept = append(d.accept, slices.Contains(set, a.accept))
		d.trans = append(d.trans, make([]int32, d.nclass)...)
		return id
	}
	seen[0] = true
	add(a.closure([]int32{0}, []int32{0}, seen))
	// Transitions hold the next state's offset in trans (state * nclass),
	// which saves match a multiplication per byte.
	for s := 0; s < len(states); s++ {
		if len(states) > maxDFAStates {
			return nil
		}
		for cl := 0; cl < d.nclass; cl++ {
			clear(seen)
			var next []int32
			for _, n := range states[s] {
				nd := &a.nodes[n]
				if nd.consume && nd.set.has(rep[cl]) && !seen[nd.out] {
					seen[nd.out] = true
					next = append(next, nd.out)
				}
			}
			if len(next) == 0 {
				d.trans[s*d.nclass+cl] = -1
				continue
			}
			next = a.closure(next, slices.Clone(next), seen)
			d.trans[s*d.nclass+cl] = add(next) * int32(d.nclass)
		}
	}
	return d
}

func (d *dfa) match(s string) bool {
	trans, class := d.trans, &d.class
	off := int32(0)
	for i := 0; i < len(s); i++ {
		off = trans[off+int32(class[s[i]])]
		if off < 0 {
			return false
		}
	}
	return d.accept[int(off)/d.nclass]
}

// automaton is an nfa with its DFA when one fits; safe for concurrent use.
type automaton struct {
	n *nfa
	d *dfa
}

func newAutomaton(n *nfa) *automaton { return &automaton{n: n, d: compileDFA(n)} }

func (a *automaton) match(s string) bool {
	if a.d != nil {
		return a.d.match(s)
	}
	return a.n.match(s)
}

// maxProductStates bounds product's automaton.
const maxProductStates = 1 << 22

// maxSearchStates bounds the pairs of states one intersect visits. Past it
// intersect gives up and says so (decided is false): the overlap checks
// then warn that they cannot tell, rather than guess either way.
const maxSearchStates = 1 << 20

// efNFA is an nfa without moves that read nothing, the form intersect
// searches: state 0 is the start, state i > 0 is the (i-1)-th consuming
// node of the nfa after it read its byte. Each step of a search then reads
// exactly one byte, so a breadth-first search finds a shortest string.
type efNFA struct {
	set  []byteSet // the bytes that enter state i; set[0] is unused
	next [][]int32 // the states that one more byte can enter from state i
	acc  []bool    // whether a string that ends in state i matches
}

func newEFNFA(a *nfa) *efNFA {
	id := make([]int32, len(a.nodes)) // the state of each consuming node
	e := &efNFA{set: []byteSet{{}}}
	origin := []int32{0} // where each state's moves without reading start
	for i, n := range a.nodes {
		if n.consume {
			id[i] = int32(len(e.set))
			e.set = append(e.set, n.set)
			origin = append(origin, n.out)
		}
	}
	e.next = make([][]int32, len(e.set))
	e.acc = make([]bool, len(e.set))
	// seen holds the state whose closure last visited each node, so it
	// needs no clearing between states.
	seen := make([]int32, len(a.nodes))
	for i := range seen {
		seen[i] = -1
	}
	var stack []int32
	for s, o := range origin {
		seen[o] = int32(s)
		stack = append(stack[:0], o)
		for len(stack) > 0 {
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			nd := &a.nodes[n]
			if nd.consume {
				e.next[s] = append(e.next[s], id[n])
				continue
			}
			if n == a.accept {
				e.acc[s] = true
			}
			for j := len(nd.eps) - 1; j >= 0; j-- {
				if m := nd.eps[j]; seen[m] != int32(s) {
					seen[m] = int32(s)
					stack = append(stack, m)
				}
			}
		}
	}
	return e
}

// searcher intersects automata, keeping its buffers from one search to
// the next. It is not safe for concurrent use.
type searcher struct {
	limit int // maxSearchStates unless a test lowers it
	// A pair of states (i, j) is p = i*len(b.set) + j; the byte read to
	// enter it is one of both states' sets. A small product marks its
	// pairs in stamp (visited in this search when it holds gen), with the
	// pair it came from in parent; a large one in sparse.
	stamp  []uint32
	gen    uint32
	parent []int32
	sparse map[int64]int64
	queue  []int64

	searches int // intersections run, which tests count
}

// denseStates is the largest product whose pairs a searcher marks in
// arrays rather than a map: 8 MB of buffers at most.
const denseStates = 1 << 20

func newSearcher() *searcher { return &searcher{limit: maxSearchStates} }

// intersect reports whether some string matches both a and b, and returns
// a shortest one, built of readable bytes where it can. decided is false
// when the search hit its bound: then ok is true and key is "".
func intersect(a, b *nfa) (key string, ok, decided bool) {
	return newSearcher().intersect(newEFNFA(a), newEFNFA(b))
}

// intersect is the package's intersect on automata already converted.
func (s *searcher) intersect(a, b *efNFA) (key string, ok, decided bool) {
	s.searches++
	nb := int64(len(b.set))
	total := int64(len(a.set)) * nb
	dense := total <= denseStates
	if dense {
		if int64(len(s.stamp)) < total {
			s.stamp = make([]uint32, total)
			s.parent = make([]int32, total)
			s.gen = 0
		}
		s.gen++
		if s.gen == 0 { // wrapped: old marks could pass for new ones
			clear(s.stamp)
			s.gen = 1
		}
	} else {
		s.sparse = make(map[int64]int64)
	}
	visited := func(p int64) bool {
		if dense {
			return s.stamp[p] == s.gen
		}
		_, ok := s.sparse[p]
		return ok
	}
	mark := func(p, parent int64) {
		if dense {
			s.stamp[p], s.parent[p] = s.gen, int32(parent)
		} else {
			s.sparse[p] = parent
		}
	}
	mark(0, -1)
	s.queue = append(s.queue[:0], 0)
	for head := 0; head < len(s.queue); head++ {
		p := s.queue[head]
		i, j := p/nb, p%nb
		if a.acc[i] && b.acc[j] {
			var out []byte
			for p != 0 {
				c, _ := a.set[p/nb].and(b.set[p%nb]).pick()
				out = append(out, c)
				if dense {
					p = int64(s.parent[p])
				} else {
					p = s.sparse[p]
				}
			}
			slices.Reverse(out)
			return string(out), true, true
		}
		for _, x := range a.next[i] {
			for _, y := range b.next[j] {
				q := int64(x)*nb + int64(y)
				if visited(q) || a.set[x].and(b.set[y]).empty() {
					continue
				}
				if len(s.queue) >= s.limit {
					return "", true, false
				}
				mark(q, p)
				s.queue = append(s.queue, q)
			}
		}
	}
	return "", false, true
}

// product returns an automaton of the strings both a and b match, or nil
// when it would have more than maxProductStates states.
func product(a, b *nfa) *nfa {
	type state struct{ a, b int32 }
	out := &nfa{}
	ids := map[state]int32{}
	var queue []state
	id := func(s state) int32 {
		if i, ok := ids[s]; ok {
			return i
		}
		i := int32(len(out.nodes))
		ids[s] = i
		out.nodes = append(out.nodes, nfaNode{})
		queue = append(queue, s)
		return i
	}
	id(state{0, 0})
	out.accept = -1
	for len(queue) > 0 {
		if len(out.nodes) > maxProductStates {
			return nil
		}
		st := queue[0]
		queue = queue[1:]
		i := ids[st]
		na, nb := &a.nodes[st.a], &b.nodes[st.b]
		var n nfaNode
		if st.a == a.accept && st.b == b.accept {
			out.accept = i
		}
		if !na.consume {
			for _, e := range na.eps {
				n.eps = append(n.eps, id(state{e, st.b}))
			}
		}
		if !nb.consume {
			for _, e := range nb.eps {
				n.eps = append(n.eps, id(state{st.a, e}))
			}
		}
		if na.consume && nb.consume {
			if set := na.set.and(nb.set); !set.empty() {
				// A consuming node has one successor, so it hangs off an
				// epsilon node of its own.
				c := nfaNode{consume: true, set: set, out: id(state{na.out, nb.out})}
				out.nodes = append(out.nodes, c)
				n.eps = append(n.eps, int32(len(out.nodes)-1))
			}
		}
		out.nodes[i] = n
	}
	if out.accept < 0 {
		// No accepting pair is reachable: an automaton that matches nothing.
		out.nodes = append(out.nodes, nfaNode{})
		out.accept = int32(len(out.nodes) - 1)
	}
	return out
}
