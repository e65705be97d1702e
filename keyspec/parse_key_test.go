package keyspec

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseKey_InvertsKey(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		template string
		opts     FamilyOptions
		params   map[string]string
	}{
		{"user:{id}:profile", FamilyOptions{}, map[string]string{"id": "42"}},
		{"user:{id}:profile", FamilyOptions{}, map[string]string{"id": "a:b"}},
		{"user:{id}:profile", FamilyOptions{HashTag: "id"}, map[string]string{"id": "7"}},
		{"product:{id}:price:{cur}", FamilyOptions{Params: map[string]Param{"id": {Match: "[0-9]+"}}},
			map[string]string{"id": "7", "cur": "EUR:x"}},
		{"p:{a}:{b}", FamilyOptions{Params: map[string]Param{"a": {Match: "[^:]+"}}}, map[string]string{"a": "1", "b": "2:3"}},
		{"bin:{k}", FamilyOptions{}, map[string]string{"k": "\xff\x00*?"}},
	} {
		f := mustFamily(t, "f", tc.template, tc.opts)
		key, err := f.Key(tc.params)
		require.NoError(t, err)
		got, err := f.ParseKey(key)
		require.NoError(t, err, key)
		require.Equal(t, tc.params, got, key)
	}
}

func TestParseKey_RefusesOtherAndAmbiguousKeys(t *testing.T) {
	t.Parallel()

	f := mustFamily(t, "f", "x:{a}:{b}", FamilyOptions{})
	_, err := f.ParseKey("x:1:2:3")
	require.ErrorIs(t, err, ErrKeyShape, "a=1:2,b=3 or a=1,b=2:3")
	require.ErrorContains(t, err, "more than one way")
	_, err = f.ParseKey("y:1:2")
	require.ErrorIs(t, err, ErrKeyShape)
	_, err = f.ParseKey("x:1:")
	require.ErrorIs(t, err, ErrKeyShape, "empty value")

	d := mustFamily(t, "d", "product:{id}", FamilyOptions{Params: map[string]Param{"id": {Match: "[0-9]+"}}})
	_, err = d.ParseKey("product:7:price")
	require.ErrorIs(t, err, ErrKeyShape, "outside the declaration")

	h := mustFamily(t, "h", "u:{id}:p", FamilyOptions{HashTag: "id"})
	_, err = h.ParseKey("u:7:p")
	require.ErrorIs(t, err, ErrKeyShape, "hash tag without braces")

	v := mustFamily(t, "v", "feed:{id}", FamilyOptions{Strategy: StrategyVersion})
	_, err = v.ParseKey("feed:1")
	require.ErrorIs(t, err, ErrVersioned)
}

func FuzzParseKey(f *testing.F) {
	fam, err := NewFamily("f", "a:{x}:b:{y}", FamilyOptions{HashTag: "y"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("a:1:b:{2}")
	f.Add("a:1:b:{2}:b:{3}")
	f.Add("a::b:{}")
	f.Fuzz(func(t *testing.T, key string) {
		params, err := fam.ParseKey(key)
		if err != nil {
			return
		}
		// Whatever parses renders back to the very same key.
		back, err := fam.Key(params)
		if err != nil || back != key {
			t.Fatalf("ParseKey(%q) = %v, which renders %q, %v", key, params, back, err)
		}
	})
}
