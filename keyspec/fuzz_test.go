package keyspec

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// FuzzParseTemplate parses arbitrary templates and, for each one that parses,
// renders it with the fuzzed value: the key must hold the value verbatim, and
// the fully fixed pattern must match that key and nothing a different value
// renders.
func FuzzParseTemplate(f *testing.F) {
	f.Add("user:{id}:profile", "42")
	f.Add("{tenant}:user:{id}", "*")
	f.Add("a{x}b{y}", "[a-z]")
	f.Fuzz(func(t *testing.T, src, value string) {
		tmpl, err := ParseTemplate(src)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidTemplate)
			require.Nil(t, tmpl)
			return
		}
		require.Equal(t, src, tmpl.String())
		params := tmpl.Params()
		seen := map[string]bool{}
		for _, p := range params {
			require.True(t, validParamName(p), "param %q", p)
			require.False(t, seen[p], "duplicate param %q", p)
			seen[p] = true
		}
		if value == "" {
			return
		}
		fam := &Family{Name: "fuzz", Template: tmpl, FamilyOptions: FamilyOptions{Strategy: StrategyDelete}}
		values := map[string]string{}
		for _, p := range params {
			values[p] = value
		}
		key, err := fam.Key(values)
		require.NoError(t, err)
		require.Len(t, key, len(src)-countBraces(params)+len(params)*len(value))

		pattern, err := fam.Pattern(values)
		require.NoError(t, err, "a fully fixed pattern is always allowed")
		require.True(t, redisMatch(pattern, key), "pattern %q key %q", pattern, key)
		if len(params) > 0 {
			other := map[string]string{}
			for _, p := range params {
				other[p] = value + "x"
			}
			otherKey, err := fam.Key(other)
			require.NoError(t, err)
			require.False(t, redisMatch(pattern, otherKey), "pattern %q key %q", pattern, otherKey)
		}

		// With nothing fixed, a pattern is either refused as unsafe or starts
		// with a delimited literal prefix.
		wild, err := fam.Pattern(nil)
		if err != nil {
			require.ErrorIs(t, err, ErrUnsafePattern)
		} else if len(params) > 0 {
			require.True(t, redisMatch(wild, key), "pattern %q key %q", wild, key)
		}

		// Without declarations a pattern delete's matcher filters nothing,
		// and matches exactly what the glob does.
		for _, given := range []map[string]string{values, nil} {
			m, err := fam.Matcher(given)
			if err != nil {
				require.ErrorIs(t, err, ErrUnsafePattern)
				continue
			}
			require.False(t, m.Filters())
			for _, k := range []string{key, value, src, key + value, value + key, m.Pattern()} {
				require.Equal(t, redisMatch(m.Pattern(), k), m.Match(k), "pattern %q key %q", m.Pattern(), k)
			}
		}
	})
}

// countBraces returns how many template bytes the "{name}" placeholders take.
func countBraces(params []string) int {
	n := 0
	for _, p := range params {
		n += len(p) + 2
	}
	return n
}

// FuzzParse feeds arbitrary bytes to the policy parser: it must never panic,
// must fail only with positioned ValidationErrors, and whatever it accepts
// must be a consistent policy.
func FuzzParse(f *testing.F) {
	f.Add([]byte("version: 1\nclasses:\n  standard: {ttl: 10m}\nfamilies:\n  user: {template: 'user:{id}', class: standard}\n"))
	f.Add([]byte("version: 1\nclasses: {standard: {ttl: 1m, weight: 2}}\nfamilies:\n  p: {template: 'p:{id}:{page}', class: standard, mode: shadow, max_keys: 9}\n" +
		"  c: {template: 'c', class: standard, strategy: version}\nevents:\n  p.updated:\n    attributes: [id, x]\n" +
		"    invalidates: [{family: p, wildcard: [page]}, c]\n"))
	f.Add([]byte("version: 1\nclasses: {standard: {ttl: 1m}}\nfamilies:\n  product: {template: 'product:{id}', class: standard, params: {id: {match: '[0-9]+'}}}\n" +
		"  price: {template: 'product:{sku}:price:{currency}', class: standard, params: {sku: {match: '[0-9]+'}, currency: {match: '(?i)[a-z]{3}'}}}\n" +
		"  feed: {template: 'feed:{u}', class: standard, strategy: version, hash_tag: u, params: {u: {match: '[^:{}]+'}}}\n" +
		"events:\n  product.updated:\n    attributes: [id, u]\n    invalidates: [product, {family: price, params: {sku: id}, wildcard: [currency]}, feed]\n"))
	f.Add([]byte("version: 1\nclasses: {standard: {ttl: 1m}}\nfamilies:\n  p: {template: 'p:{id}', class: standard}\n" +
		"events:\n  p.updated: {attributes: [id], invalidates: [p]}\ntables:\n  public.p: {event: p.updated, attributes: {id: pid}}\n"))
	f.Add([]byte("version: 1\nclasses: {standard: {ttl: 1m}}\nfamilies:\n  a: {template: 'a:{x}', class: standard, params: {x: {match: 'x|y'}}}\n" +
		"  b: {template: 'a:{x}:b', class: standard, params: {x: {match: '^[^:]*$'}}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			require.Nil(t, p)
			var verrs ValidationErrors
			require.True(t, errors.As(err, &verrs), "error %T is not ValidationErrors", err)
			require.NotEmpty(t, verrs)
			for _, e := range verrs {
				require.Equal(t, "fuzz.yaml", e.File)
				require.GreaterOrEqual(t, e.Line, 0)
				require.NotEmpty(t, e.Msg)
			}
			return
		}
		require.Equal(t, "fuzz.yaml", p.Source)
		require.NotEmpty(t, p.Classes)
		_, err = p.Class(p.DefaultClass)
		require.NoError(t, err)
		require.NotEmpty(t, p.Queues())
		for name, c := range p.Classes {
			require.Equal(t, name, c.Name)
			require.NotEmpty(t, c.Queue)
			require.GreaterOrEqual(t, c.MaxRetry, 0)
			require.Positive(t, c.Timeout)
			require.Positive(t, c.BackoffBase)
			require.GreaterOrEqual(t, c.BackoffMax, c.BackoffBase)
			require.GreaterOrEqual(t, c.TTL, 0*c.TTL)
			require.Equal(t, "", checkJitter(c.Jitter))
		}
		for name, fam := range p.Families {
			require.Equal(t, name, fam.Name)
			require.NotNil(t, fam.Template)
			require.NotNil(t, p.ClassOf(fam))
			require.Equal(t, "", checkJitter(fam.Jitter))
			require.True(t, fam.Strategy.valid())
			if fam.HashTag != "" {
				require.True(t, fam.Template.HasParam(fam.HashTag))
			}
			if fam.Strategy == StrategyVersion {
				require.Positive(t, fam.TTL)
			}
			checkDeclaredFamily(t, fam)
		}
		// Every event of a policy that loads resolves, with any plain
		// attribute values, into one action per invalidation.
		for name, e := range p.Events {
			attrs := map[string]string{}
			braces := false
			for _, a := range e.Attributes {
				attrs[a] = "v"
				// An attribute given to declared parameters takes a value
				// all of them match; the linter refuses an event where
				// there is none.
				var decls []*paramDecl
				for _, inv := range e.Invalidates {
					fam := p.Families[inv.Family]
					for _, param := range fam.Template.params {
						if d := fam.decls[param]; d != nil && inv.source(param) == a {
							decls = append(decls, d)
						}
					}
				}
				if len(decls) > 0 {
					v, ok := commonValue(decls)
					require.True(t, ok, "event %q attribute %q", name, a)
					if v == "" {
						return // undecided: too large to check here
					}
					attrs[a] = v
					braces = braces || strings.ContainsAny(v, "{}")
				}
			}
			actions, refused, err := p.Resolve(name, attrs)
			require.NoError(t, err, "event %q", name)
			if braces && slices.ContainsFunc(refused, func(r Refusal) bool { return errors.Is(r.Err, ErrUnsafeHashTag) }) {
				continue // a declaration that allows braces in a hash tag
			}
			require.Empty(t, refused, "event %q", name)
			require.Len(t, actions, len(e.Invalidates))
			require.NotEmpty(t, actions)
		}
	})
}

// checkDeclaredFamily renders a key of fam from a value of each declared
// parameter (and "v" for the others): the key renders, its pattern delete's
// matcher and the family's KeysMatcher match it, and the matcher never
// matches a key its glob does not.
func checkDeclaredFamily(t *testing.T, fam *Family) {
	t.Helper()
	values := map[string]string{}
	for _, param := range fam.Template.params {
		values[param] = "v"
		d := fam.decls[param]
		if d == nil {
			continue
		}
		decl, ok := fam.Params[param]
		require.True(t, ok)
		require.Equal(t, d.Match, decl.Match)
		v, ok := commonValue([]*paramDecl{d})
		require.True(t, ok, "a declaration the policy accepts matches some value")
		if v == "" || strings.ContainsAny(v, "{}") {
			return
		}
		values[param] = v
		bad := v + "\x00:"
		if !d.match(bad) {
			_, err := fam.Key(map[string]string{param: bad})
			if len(fam.Template.params) == 1 {
				require.ErrorIs(t, err, ErrInvalidParam)
			}
		}
	}
	if fam.Strategy == StrategyVersion {
		key, err := fam.VersionKey(values)
		require.NoError(t, err)
		require.True(t, fam.KeysMatcher().Match(key), "version key %q", key)
		return
	}
	key, err := fam.Key(values)
	require.NoError(t, err)
	require.True(t, fam.KeysMatcher().Match(key), "key %q", key)
	m, err := fam.Matcher(nil)
	if err != nil {
		require.ErrorIs(t, err, ErrUnsafePattern)
		return
	}
	require.True(t, m.Match(key), "matcher of %q on %q", m.Pattern(), key)
	require.True(t, redisMatch(m.Pattern(), key), "glob %q on %q", m.Pattern(), key)
}

// FuzzParamMatch compiles arbitrary declarations and matches arbitrary
// values: the byte-level automaton (its DFA, its simulation, and the
// search the overlap checks run) agrees with Go's regexp anchored at both
// ends, and a refused declaration is refused with a message.
//
// A declaration reads bytes, Go's regexp runes. The two agree on a value
// whose bytes >= 0x80 each become one rune that every class the policy
// accepts holds or lacks as it holds or lacks all of them: 'é' does.
func FuzzParamMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"[0-9]+", "42"}, {"[A-Z]{3}", "EUR"}, {"(?i)[a-f0-9]{8}-[a-f0-9]{4}", "DEADbeef-0a1b"}, {"[^:]+", "a:b"},
		{"^x|y$", "y"}, {"a*b?c{2,3}", "acc"}, {".+", "a\nb"}, {"(?s).", "\n"}, {`\w+\.\d`, "ab.1"}, {"a|\\b", "b"},
		{"(?i)[^k]+", "\u212a"}, {"[^s]+", "\u017f"}, {`[^\x{17f}]+`, "a"}, {"(?i)[a-z]+", "Sk"}, {`\Q0`, "0"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, expr, value string) {
		d, msg := compileParam(Param{Match: expr})
		if msg != "" {
			require.Nil(t, d)
			return
		}
		require.NotNil(t, d)
		got := d.match(value)
		require.Equal(t, got, d.nfa.match(value), "DFA and simulation disagree: %q on %q", expr, value)
		lit := newNFABuilder()
		lit.lit(value)
		_, found, decided := intersect(d.nfa, lit.finish())
		require.True(t, decided)
		require.Equal(t, got, found, "intersect and match disagree: %q on %q", expr, value)
		require.Equal(t, got && value != "", d.key.match(value), "the values Key renders: %q on %q", expr, value)
		var runes strings.Builder
		for i := 0; i < len(value); i++ {
			if value[i] >= utf8.RuneSelf {
				runes.WriteRune('é')
			} else {
				runes.WriteByte(value[i])
			}
		}
		// Anchored without wrapping the text in ^(?:...)$, which an
		// unterminated \Q would swallow: a whole-value match exists
		// exactly when the leftmost-longest match spans the value.
		re, err := regexp.Compile(expr)
		require.NoError(t, err, "a declaration we accept compiles in Go")
		re.Longest()
		v := runes.String()
		loc := re.FindStringIndex(v)
		want := loc != nil && loc[0] == 0 && loc[1] == len(v)
		require.Equal(t, want, got, "%q on %q (as %q)", expr, value, v)
	})
}
