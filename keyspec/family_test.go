package keyspec

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// mustFamily builds a family or fails the test.
func mustFamily(t *testing.T, name, template string, opts FamilyOptions) *Family {
	t.Helper()
	f, err := NewFamily(name, template, opts)
	require.NoError(t, err)
	return f
}

func TestNewFamily(t *testing.T) {
	t.Parallel()

	f := mustFamily(t, "user_profile", "user:{id}:profile", FamilyOptions{
		Class: "standard", TTL: 5 * time.Minute, Jitter: 0.1, HashTag: "id", Owner: "accounts",
	})
	require.Equal(t, "user_profile", f.Name)
	require.Equal(t, "user:{id}:profile", f.Template.String())
	require.Equal(t, "standard", f.Class)
	require.Equal(t, 5*time.Minute, f.TTL)
	require.InDelta(t, 0.1, f.Jitter, 0)
	require.Equal(t, StrategyDelete, f.Strategy, "strategy defaults to delete")
	require.Equal(t, "id", f.HashTag)
	require.Equal(t, "accounts", f.Owner)
}

func TestNewFamilyRefusals(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name, template string
		opts           FamilyOptions
		msg            string
	}{
		{"", "user:{id}", FamilyOptions{}, `invalid family name ""`},
		{"user profile", "user:{id}", FamilyOptions{}, `invalid family name "user profile"`},
		{"user", "user:{id", FamilyOptions{}, `family "user": invalid key template`},
		{"user", "user:{id}", FamilyOptions{Class: "Critical"}, `invalid class name "Critical"`},
		{"user", "user:{id}", FamilyOptions{TTL: -time.Second}, `ttl -1s is negative`},
		{"user", "user:{id}", FamilyOptions{Jitter: 0.6}, `jitter 0.6 is outside [0, 0.5]`},
		{"user", "user:{id}", FamilyOptions{Jitter: -0.1}, `jitter -0.1 is outside`},
		{"user", "user:{id}", FamilyOptions{Strategy: "purge"}, `unknown strategy "purge"`},
		{"user", "user:{id}", FamilyOptions{HashTag: "uid"}, `hash_tag "uid" is not a parameter of template "user:{id}" (parameters: id)`},
	} {
		f, err := NewFamily(tc.name, tc.template, tc.opts)
		require.ErrorContains(t, err, tc.msg)
		require.Nil(t, f)
	}
}

func TestKey(t *testing.T) {
	t.Parallel()

	prices := mustFamily(t, "product_price", "product:{sku}:price:{currency}", FamilyOptions{})
	key, err := prices.Key(map[string]string{"sku": "123", "currency": "EUR"})
	require.NoError(t, err)
	require.Equal(t, "product:123:price:EUR", key)

	static := mustFamily(t, "config", "config:global", FamilyOptions{})
	key, err = static.Key(nil)
	require.NoError(t, err)
	require.Equal(t, "config:global", key)
}

func TestKeyValuesAreVerbatimBytes(t *testing.T) {
	t.Parallel()

	f := mustFamily(t, "user", "user:{id}:profile", FamilyOptions{})
	for _, v := range []string{"*", "a?c", "[x]", `\`, "\x00", "\xff\xfe", "a b\r\n", "ünï", "{}"} {
		key, err := f.Key(map[string]string{"id": v})
		require.NoError(t, err, "%q", v)
		require.Equal(t, "user:"+v+":profile", key)
	}
}

func TestKeyHashTag(t *testing.T) {
	t.Parallel()

	f := mustFamily(t, "user", "user:{id}:profile", FamilyOptions{HashTag: "id"})
	key, err := f.Key(map[string]string{"id": "42"})
	require.NoError(t, err)
	require.Equal(t, "user:{42}:profile", key)
	require.Equal(t, "42", clusterHashTag(key))

	// Only the hash-tag parameter gets braces.
	perm := mustFamily(t, "perm", "perm:{user}:{resource}", FamilyOptions{HashTag: "user"})
	key, err = perm.Key(map[string]string{"user": "42", "resource": "doc:7"})
	require.NoError(t, err)
	require.Equal(t, "perm:{42}:doc:7", key)
}

func TestKeyHashTagRefusesBracesThatMoveTheTag(t *testing.T) {
	t.Parallel()

	f := mustFamily(t, "t", "t:{tenant}:user:{id}:x:{page}", FamilyOptions{HashTag: "id"})
	for _, tc := range []struct {
		params map[string]string
		msg    string
	}{
		{map[string]string{"tenant": "a", "id": "4}2", "page": "1"}, `the value of hash-tag parameter "id" contains '}'`},
		{map[string]string{"tenant": "a{", "id": "42", "page": "1"}, `the value of "tenant" contains '{' and comes before hash-tag parameter "id"`},
	} {
		_, err := f.Key(tc.params)
		require.ErrorIs(t, err, ErrUnsafeHashTag)
		require.ErrorContains(t, err, `render family "t": parameter value would move the cluster hash tag: `+tc.msg)
	}

	// Braces that cannot move the tag are fine: '{' inside the tag, '}'
	// before it, anything after it.
	key, err := f.Key(map[string]string{"tenant": "a}", "id": "{42", "page": "{}"})
	require.NoError(t, err)
	require.Equal(t, "t:a}:user:{{42}:x:{}", key)
	require.Equal(t, "{42", clusterHashTag(key))
}

func TestKeyRefusals(t *testing.T) {
	t.Parallel()

	f := mustFamily(t, "product_price", "product:{sku}:price:{currency}", FamilyOptions{})
	for _, tc := range []struct {
		params map[string]string
		err    error
		msg    string
	}{
		{nil, ErrMissingParam, `render family "product_price": missing parameter "sku": template "product:{sku}:price:{currency}" needs sku, currency`},
		{map[string]string{"sku": "1"}, ErrMissingParam, `missing parameter "currency"`},
		{map[string]string{"sku": "1", "currency": "EUR", "region": "eu"}, ErrUnknownParam, `render family "product_price": unknown parameter "region"`},
		{map[string]string{"sku": "", "currency": "EUR"}, ErrEmptyParam, `render family "product_price": empty parameter value for "sku"`},
		{map[string]string{"sku": "1", "currency": ""}, ErrEmptyParam, `empty parameter value for "currency"`},
	} {
		key, err := f.Key(tc.params)
		require.ErrorIs(t, err, tc.err)
		require.ErrorContains(t, err, tc.msg)
		require.Empty(t, key)
	}
}
