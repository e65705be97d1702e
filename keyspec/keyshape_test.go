package keyspec

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The pruning may only ever skip pairs that share no key: a wrong skip is
// a collision loaded silently. Random families over a small alphabet, in
// every language the checks use, against the exact intersection.
func TestDisjointIsSound(t *testing.T) {
	t.Parallel()

	rng := rand.New(rand.NewPCG(1, 2))
	lits := []string{"a", "b", ":", "a:", ":a", "b:", ":b:", "ab", "a:b", "{", "#v"}
	decls := []string{"", "", "[ab]+", "[a:]+", "a*", "[0-9]+", "b|a:b"}
	var fams []*Family
	for len(fams) < 80 {
		var b strings.Builder
		var params map[string]Param
		n := 1 + rng.IntN(3)
		startParam := rng.IntN(3) == 0
		for i := range n {
			if i > 0 || !startParam {
				b.WriteString(lits[rng.IntN(len(lits))])
			}
			if i < n-1 || rng.IntN(2) == 0 {
				name := fmt.Sprintf("p%d", i)
				fmt.Fprintf(&b, "{%s}", name)
				if d := decls[rng.IntN(len(decls))]; d != "" {
					if params == nil {
						params = map[string]Param{}
					}
					params[name] = Param{Match: d}
				}
			}
		}
		opts := FamilyOptions{Params: params}
		if rng.IntN(4) == 0 {
			opts.Strategy, opts.TTL = StrategyVersion, 1
		}
		f, err := NewFamily(fmt.Sprintf("f%d", len(fams)), b.String(), opts)
		if err != nil {
			continue // a template or declaration the rules refuse
		}
		fams = append(fams, f)
	}
	c := newOverlapChecker(0)
	pruned := 0
	for _, langs := range [][2]valueLang{{langConv, langConv}, {langAny, langConv}, {langGlob, langConv}, {langGlob, langAny}, {langAny, langAny}} {
		for _, fa := range fams {
			for _, fb := range fams {
				for _, sa := range c.shapesOf(fa, langs[0]) {
					for _, sb := range c.shapesOf(fb, langs[1]) {
						if !disjoint(sa, sb) {
							continue
						}
						pruned++
						key, ok, decided := c.s.intersect(sa.efNFA(), sb.efNFA())
						require.True(t, decided)
						require.False(t, ok, "%s (lang %d) and %s (lang %d) share %q, but the pruning says they cannot",
							fa.Template, langs[0], fb.Template, langs[1], key)
					}
				}
			}
		}
	}
	require.Greater(t, pruned, 10000, "the families must give the pruning work")
}

// A policy whose families differ only in literal text between two ':'
// loads without a single intersection: that is what keeps a load of
// hundreds of families in milliseconds (BenchmarkParse).
func TestCollisionCheckPrunesByLiteralText(t *testing.T) {
	t.Parallel()

	for _, shape := range []string{"declared", "half"} {
		p, err := Parse("p.yaml", benchPolicy(200, shape))
		require.NoError(t, err)
		c := newOverlapChecker(0)
		names := p.FamilyNames()
		for i, a := range names {
			for _, b := range names[i+1:] {
				_, ok, decided := c.families(p.Families[a], langConv, p.Families[b], langConv)
				require.True(t, decided)
				require.False(t, ok)
			}
		}
		require.Zero(t, c.s.searches, shape)
	}
}
