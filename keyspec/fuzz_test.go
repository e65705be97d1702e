package keyspec

import (
	"errors"
	"testing"

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
		fam := &Family{Name: "fuzz", Template: tmpl, Strategy: StrategyDelete}
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
		}
		// Every event of a policy that loads resolves, with any plain
		// attribute values, into one action per invalidation.
		for name, e := range p.Events {
			attrs := map[string]string{}
			for _, a := range e.Attributes {
				attrs[a] = "v"
			}
			actions, err := p.Resolve(name, attrs)
			require.NoError(t, err, "event %q", name)
			require.Len(t, actions, len(e.Invalidates))
			require.NotEmpty(t, actions)
		}
	})
}
