package keyspec

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// What a pattern delete removes is decided by two things only: the SCAN
// glob (redisMatch, a port of Redis's matcher) and, when it filters, the
// family's Matcher. What a family's keys are is decided by Key, VersionKey
// and DataKey. The capture warnings must report every pair where the
// first takes a key of the second, which these tests find by brute force.

// captureValues are the parameter values the brute force renders keys
// with: every string of 1 or 2 bytes over "ab:".
func captureValues() []string {
	var out []string
	var gen func(prefix string)
	gen = func(prefix string) {
		if prefix != "" {
			out = append(out, prefix)
		}
		if len(prefix) == 2 {
			return
		}
		for _, c := range "ab:" {
			gen(prefix + string(c))
		}
	}
	gen("")
	return out
}

// renderedKeys returns every key f renders with values from vals.
func renderedKeys(f *Family, vals []string) []string {
	var out []string
	params := map[string]string{}
	names := f.Template.Params()
	var gen func(i int)
	gen = func(i int) {
		if i < len(names) {
			for _, v := range vals {
				params[names[i]] = v
				gen(i + 1)
			}
			return
		}
		if f.Strategy == StrategyVersion {
			if k, err := f.VersionKey(params); err == nil {
				out = append(out, k)
			}
			for _, v := range []int64{0, 7} {
				if k, err := f.DataKey(params, v); err == nil {
					out = append(out, k)
				}
			}
			return
		}
		if k, err := f.Key(params); err == nil {
			out = append(out, k)
		}
	}
	gen(0)
	return out
}

// deletes reports whether a pattern delete removes key, as the worker
// decides: the glob, then the matcher when it filters. m is the family's
// Matcher(nil).
func deletes(m *Matcher, key string) bool {
	return redisMatch(m.Pattern(), key) && (!m.Filters() || m.Match(key))
}

// renders reports whether f renders key with some values: it splits key
// along f's template in every way and asks Key (or VersionKey, DataKey)
// for each.
func renders(f *Family, key string) bool {
	type seg struct {
		lit   string
		param string
	}
	var segs []seg
	for _, s := range f.Template.segs {
		switch {
		case !s.isParam:
			segs = append(segs, seg{lit: s.text})
		case s.text == f.HashTag:
			segs = append(segs, seg{lit: "{"}, seg{param: s.text}, seg{lit: "}"})
		default:
			segs = append(segs, seg{param: s.text})
		}
	}
	var split func(rest string, i int, params map[string]string, check func(map[string]string) bool) bool
	split = func(rest string, i int, params map[string]string, check func(map[string]string) bool) bool {
		if i == len(segs) {
			return rest == "" && check(params)
		}
		if s := segs[i]; s.param == "" {
			return strings.HasPrefix(rest, s.lit) && split(rest[len(s.lit):], i+1, params, check)
		}
		for n := 1; n <= len(rest); n++ {
			params[segs[i].param] = rest[:n]
			if split(rest[n:], i+1, params, check) {
				return true
			}
		}
		delete(params, segs[i].param)
		return false
	}
	is := func(k string, err error) bool { return err == nil && k == key }
	if f.Strategy != StrategyVersion {
		return split(key, 0, map[string]string{}, func(p map[string]string) bool { return is(f.Key(p)) })
	}
	for i := 0; i+2 <= len(key); i++ {
		if key[i:i+2] != dataKeyInfix {
			continue
		}
		prefix, check := key[:i], func(p map[string]string) bool { return is(f.VersionKey(p)) }
		if key[i:] != versionKeySuffix {
			v, err := strconv.ParseInt(key[i+2:], 10, 64)
			if err != nil {
				continue
			}
			check = func(p map[string]string) bool { return is(f.DataKey(p, v)) }
		}
		if f.HashTag == "" {
			if len(prefix) < 2 || prefix[0] != '{' || prefix[len(prefix)-1] != '}' {
				continue
			}
			prefix = prefix[1 : len(prefix)-1]
		}
		if split(prefix, 0, map[string]string{}, check) {
			return true
		}
	}
	return false
}

// checkCaptures compares the capture map of a policy with brute force:
// every pair where one family's delete removes a key the other renders
// (with short values) is reported, and every example reported is such a
// key. It returns how many pairs the brute force found.
func checkCaptures(t *testing.T, p *Policy) int {
	t.Helper()
	caps, undecided := p.captureMap(0)
	require.Empty(t, undecided)
	reported := func(x, y string) (string, bool) {
		i := slices.IndexFunc(caps[x], func(c Capture) bool { return c.Family == y })
		if i < 0 {
			return "", false
		}
		return caps[x][i].Example, true
	}
	vals := captureValues()
	keys := map[string][]string{}
	for name, f := range p.Families {
		keys[name] = renderedKeys(f, vals)
	}
	c := newOverlapChecker(0)
	found := 0
	for _, x := range p.FamilyNames() {
		fx := p.Families[x]
		m, err := fx.Matcher(nil)
		canDelete := err == nil // not a version family, nor a pattern refused
		for _, y := range p.FamilyNames() {
			fy := p.Families[y]
			if x == y {
				continue
			}
			if _, collide, _ := c.families(fx, langConv, fy, langConv); collide {
				continue // an error at load, not a warning
			}
			ex, ok := reported(x, y)
			if ok && canDelete {
				require.True(t, deletes(m, ex) && renders(fy, ex),
					"%s (%s) captures %s (%s): the example %q is no key of %s that the delete removes", x, fx.Template, y, fy.Template, ex, y)
			}
			if !canDelete {
				continue
			}
			i := slices.IndexFunc(keys[y], func(k string) bool { return deletes(m, k) })
			if i < 0 {
				continue
			}
			found++
			_, back := reported(y, x)
			require.True(t, ok || back, "the delete of %s (%s) removes %q, a key of %s (%s), and lint reports neither %s nor %s",
				x, fx.Template, keys[y][i], y, fy.Template, x, y)
		}
	}
	return found
}

// policyOf builds a policy of families given as "name template [param=re]...".
func policyOf(t *testing.T, specs ...string) *Policy {
	t.Helper()
	p := Default()
	for _, spec := range specs {
		fields := strings.Fields(spec)
		opts := FamilyOptions{Params: map[string]Param{}}
		for _, f := range fields[2:] {
			switch k, v, _ := strings.Cut(f, "="); k {
			case "version":
				opts.Strategy, opts.TTL = StrategyVersion, 1
			case "tag":
				opts.HashTag = v
			default:
				opts.Params[k] = Param{Match: v}
			}
		}
		f, err := NewFamily(fields[0], fields[1], opts)
		require.NoError(t, err)
		require.NoError(t, p.AddFamily(f))
	}
	return p
}

// Cases where a wildcard or a declared value matches the empty string.
func TestCaptureThroughEmptyWildcard(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		specs []string
		want  map[string][]string // who captures whom
	}{
		// "a:*" matches the key "a:" of a family that is only literal.
		{[]string{"wild a:{x}", "lit a:"}, map[string][]string{"wild": {"lit"}}},
		// "a:*:b" matches "a::b", a key of "a::{y}" whatever y declares.
		{[]string{"mid a:{x}:b", "other a::{y} y=[a-z]+"}, map[string][]string{"mid": {"other"}}},
		// A declaration that matches "" keeps "a:" in the delete.
		{[]string{"opt a:{x} x=b*", "lit a:"}, map[string][]string{"opt": {"lit"}}},
		// ... but Key never renders an empty value, so "a:{y}" has no key
		// "a:" for anyone to capture.
		{[]string{"opt a:{x}b x=a*", "ys a:{y}b y=b*"}, map[string][]string{}},
	} {
		p := policyOf(t, tc.specs...)
		got := map[string][]string{}
		caps, _ := p.captureMap(0)
		for name, caps := range caps {
			for _, c := range caps {
				got[name] = append(got[name], c.Family)
			}
		}
		require.Equal(t, tc.want, got, "%q", tc.specs)
		checkCaptures(t, p)
	}
}

// Random small families, compared with brute force.
func TestCapturesAgreeWithBruteForce(t *testing.T) {
	t.Parallel()

	rng := rand.New(rand.NewPCG(3, 4))
	// Templates start with a literal that ends in ':', so that most
	// patterns are allowed.
	starts := []string{"a:", "b:", ":", "a::", "b:a:"}
	lits := []string{"a", "b", ":", "a:", ":b", "ab", "a::", "b:a"}
	decls := []string{"", "", "", "[ab]+", "b*", "[a:]*", "a", "a|b:"}
	found := 0
	for range 120 {
		p := Default()
		for len(p.Families) < 8 {
			var b strings.Builder
			params := map[string]Param{}
			var opts FamilyOptions
			n := rng.IntN(3)
			b.WriteString(starts[rng.IntN(len(starts))])
			for i := range n {
				name := fmt.Sprintf("p%d", i)
				fmt.Fprintf(&b, "{%s}", name)
				if d := decls[rng.IntN(len(decls))]; d != "" {
					params[name] = Param{Match: d}
				}
				if rng.IntN(2) == 0 || i < n-1 {
					b.WriteString(lits[rng.IntN(len(lits))])
				}
				if i == 0 && rng.IntN(5) == 0 {
					opts.HashTag = name
				}
			}
			if rng.IntN(5) == 0 {
				opts.Strategy, opts.TTL = StrategyVersion, 1
			}
			opts.Params = params
			f, err := NewFamily(fmt.Sprintf("f%d", len(p.Families)), b.String(), opts)
			if err != nil {
				continue // a template or declaration the rules refuse
			}
			require.NoError(t, p.AddFamily(f))
		}
		found += checkCaptures(t, p)
	}
	require.Greater(t, found, 60, "the families must capture each other often")
}
