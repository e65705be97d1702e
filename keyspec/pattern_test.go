package keyspec

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPattern(t *testing.T) {
	t.Parallel()

	user := mustFamily(t, "user", "user:{id}:profile", FamilyOptions{})
	tagged := mustFamily(t, "tagged", "user:{id}:profile", FamilyOptions{HashTag: "id"})
	price := mustFamily(t, "price", "product:{sku}:price:{currency}", FamilyOptions{})
	meta := mustFamily(t, "meta", "a*b?[c]\\:{id}", FamilyOptions{})

	for _, tc := range []struct {
		f      *Family
		params map[string]string
		want   string
	}{
		{user, nil, "user:*:profile"},
		{user, map[string]string{"id": "42"}, "user:42:profile"},
		{user, map[string]string{"id": "*"}, `user:\*:profile`},
		{user, map[string]string{"id": `a?[b]\c`}, `user:a\?\[b\]\\c:profile`},
		{tagged, nil, "user:{*}:profile"},
		{tagged, map[string]string{"id": "42"}, "user:{42}:profile"},
		{price, map[string]string{"sku": "123"}, "product:123:price:*"},
		{price, nil, "product:*:price:*"},
		{meta, nil, `a\*b\?\[c\]\\:*`},
	} {
		got, err := tc.f.Pattern(tc.params)
		require.NoError(t, err, "%s %v", tc.f.Name, tc.params)
		require.Equal(t, tc.want, got)
	}
}

func TestPatternEscapingMatchesOnlyTheLiteralValue(t *testing.T) {
	t.Parallel()

	f := mustFamily(t, "user", "user:{id}:profile", FamilyOptions{})
	pattern := func(id string) string {
		p, err := f.Pattern(map[string]string{"id": id})
		require.NoError(t, err)
		return p
	}

	p := pattern("*")
	require.True(t, redisMatch(p, "user:*:profile"))
	require.False(t, redisMatch(p, "user:42:profile"))
	require.False(t, redisMatch(p, "user::profile"))

	p = pattern("a?c")
	require.True(t, redisMatch(p, "user:a?c:profile"))
	require.False(t, redisMatch(p, "user:abc:profile"))

	p = pattern("[ab]")
	require.True(t, redisMatch(p, "user:[ab]:profile"))
	require.False(t, redisMatch(p, "user:a:profile"))

	p = pattern("[")
	require.True(t, redisMatch(p, "user:[:profile"))
	p = pattern("]")
	require.True(t, redisMatch(p, "user:]:profile"))

	p = pattern(`\`)
	require.True(t, redisMatch(p, `user:\:profile`))
	p = pattern(`\*`)
	require.True(t, redisMatch(p, `user:\*:profile`))
	require.False(t, redisMatch(p, `user:\x:profile`))
	require.False(t, redisMatch(p, `user:*:profile`))

	// Without escaping the oracle would widen: proof that it can fail.
	require.True(t, redisMatch("user:*:profile", "user:42:profile"))
}

// TestPatternNeverWidensProperty fixes random values full of glob
// metacharacters and requires that the pattern matches a key exactly when the
// key's fixed parameters have those values, whatever the unfixed ones are.
func TestPatternNeverWidensProperty(t *testing.T) {
	t.Parallel()

	// Every literal between two parameters below holds a ':', and values
	// hold none, so each key parses back to one set of values and "matches"
	// can be compared with "has the fixed values".
	const alphabet = "*?[]\\^-!ab{}\x00\xff"
	r := rand.New(rand.NewPCG(3, 4))
	families := []*Family{
		mustFamily(t, "one", "user:{id}:profile", FamilyOptions{}),
		mustFamily(t, "two", "product:{sku}:price:{currency}", FamilyOptions{}),
		mustFamily(t, "tagged", "perm:{user}:{resource}", FamilyOptions{HashTag: "user"}),
		mustFamily(t, "meta", "m*[x]:{a}?:{b}", FamilyOptions{}),
	}
	matched, rejected := 0, 0
	for range 3000 {
		f := families[r.IntN(len(families))]
		fixed := map[string]string{}
		for _, p := range f.Template.Params() {
			if r.IntN(2) == 0 {
				fixed[p] = randomValue(r, alphabet)
			}
		}
		pattern, err := f.Pattern(fixed)
		if err != nil {
			// Only the hash-tag brace rule may refuse here: every template
			// above has a delimiter before each parameter.
			require.ErrorIs(t, err, ErrUnsafeHashTag)
			continue
		}
		for range 20 {
			params := map[string]string{}
			same := true
			for _, p := range f.Template.Params() {
				v := randomValue(r, alphabet)
				if fv, ok := fixed[p]; ok && r.IntN(2) == 0 {
					v = fv
				}
				if fv, ok := fixed[p]; ok && v != fv {
					same = false
				}
				params[p] = v
			}
			key, err := f.Key(params)
			if err != nil {
				require.ErrorIs(t, err, ErrUnsafeHashTag)
				continue
			}
			require.Equal(t, same, redisMatch(pattern, key), "pattern %q key %q", pattern, key)
			if same {
				matched++
			} else {
				rejected++
			}
		}
	}
	// Both outcomes must occur, or the property proves nothing.
	require.Greater(t, matched, 1000)
	require.Greater(t, rejected, 1000)
}

func TestPatternAllFixedMatchesExactlyTheKey(t *testing.T) {
	t.Parallel()

	f := mustFamily(t, "price", "product:{sku}:price:{currency}", FamilyOptions{})
	params := map[string]string{"sku": "1*", "currency": "E?R"}
	pattern, err := f.Pattern(params)
	require.NoError(t, err)
	key, err := f.Key(params)
	require.NoError(t, err)
	require.True(t, redisMatch(pattern, key))
	require.False(t, redisMatch(pattern, "product:12:price:EUR"))
	require.False(t, redisMatch(pattern, "product:1*:price:EUR"))
}

func TestPatternRefusals(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		template string
		params   map[string]string
		err      error
		msg      string
	}{
		{"{tenant}:user:{id}", nil, ErrUnsafePattern,
			`pattern family "f": unsafe pattern: template "{tenant}:user:{id}" starts with parameter "tenant", so the pattern would start with '*' and match keys of every family; fix parameter "tenant"`},
		{"{tenant}:user:{id}", map[string]string{"id": "1"}, ErrUnsafePattern, `fix parameter "tenant"`},
		{"user{id}", nil, ErrUnsafePattern,
			`pattern family "f": unsafe pattern: the literal prefix "user" before the wildcard for "id" does not end in a delimiter such as ':'`},
		{"user_{id}", nil, ErrUnsafePattern, `the literal prefix "user_"`},
		{"user:{id}x{page}", map[string]string{"id": "1"}, ErrUnsafePattern, `the literal prefix "user:1x" before the wildcard for "page"`},
		{"caf\xc3\xa9{id}", nil, ErrUnsafePattern, `fix parameter "id"`},
		{"user:{id}", map[string]string{"uid": "1"}, ErrUnknownParam, `pattern family "f": unknown parameter "uid"`},
		{"user:{id}", map[string]string{"id": ""}, ErrEmptyParam, `pattern family "f": empty parameter value for "id"`},
	} {
		f := mustFamily(t, "f", tc.template, FamilyOptions{})
		pattern, err := f.Pattern(tc.params)
		require.ErrorIs(t, err, tc.err, tc.template)
		require.ErrorContains(t, err, tc.msg)
		require.Empty(t, pattern)
	}

	// The same templates are fine once the parameter is fixed.
	f := mustFamily(t, "f", "{tenant}:user:{id}", FamilyOptions{})
	pattern, err := f.Pattern(map[string]string{"tenant": "acme"})
	require.NoError(t, err)
	require.Equal(t, "acme:user:*", pattern)
	f = mustFamily(t, "f", "user{id}", FamilyOptions{})
	pattern, err = f.Pattern(map[string]string{"id": "*"})
	require.NoError(t, err)
	require.Equal(t, `user\*`, pattern)

	// A hash-tag wildcard is delimited by its brace.
	f = mustFamily(t, "f", "user{id}", FamilyOptions{HashTag: "id"})
	pattern, err = f.Pattern(nil)
	require.NoError(t, err)
	require.Equal(t, "user{*}", pattern)
	require.True(t, redisMatch(pattern, "user{42}"))
	require.False(t, redisMatch(pattern, "users{42}"))
}

func TestEscapeGlob(t *testing.T) {
	t.Parallel()

	require.Equal(t, "plain:\x00\xff", EscapeGlob("plain:\x00\xff"))
	require.Equal(t, `\*\?\[\]\\`, EscapeGlob(`*?[]\`))
	r := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		s := randomValue(r, "*?[]\\^-ab\x00\xff")
		require.True(t, redisMatch(EscapeGlob(s), s), "%q", s)
		other := randomValue(r, "*?[]\\^-ab\x00\xff")
		require.Equal(t, s == other, redisMatch(EscapeGlob(s), other), "%q vs %q", s, other)
	}
}
