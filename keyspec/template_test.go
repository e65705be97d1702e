package keyspec

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseTemplate(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		src    string
		params []string
	}{
		{"user:{id}:profile", []string{"id"}},
		{"config:global", nil},
		{"{tenant}:user:{id}", []string{"tenant", "id"}},
		{"product:{sku}:price:{currency}", []string{"sku", "currency"}},
		{"feed:{user_id}", []string{"user_id"}},
		{"a{_x9}b{Y}", []string{"_x9", "Y"}},
		{"*?[]\\:{id}", []string{"id"}}, // glob metacharacters are fine as literal text
		{"k\x00\xff{id}", []string{"id"}},
	} {
		tmpl, err := ParseTemplate(tc.src)
		require.NoError(t, err, tc.src)
		require.Equal(t, tc.src, tmpl.String())
		if tc.params == nil {
			require.Empty(t, tmpl.Params())
		} else {
			require.Equal(t, tc.params, tmpl.Params())
		}
	}
}

func TestParseTemplateParamsIsACopy(t *testing.T) {
	t.Parallel()

	tmpl, err := ParseTemplate("user:{id}:profile")
	require.NoError(t, err)
	tmpl.Params()[0] = "changed"
	require.Equal(t, []string{"id"}, tmpl.Params())
}

func TestParseTemplateRefusals(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		src, msg string
	}{
		{"", `invalid key template "" at offset 0: template is empty`},
		{"user:{id", `at offset 5: unclosed '{'`},
		{"user:id}", `at offset 7: stray '}'`},
		{"user:{}:x", `at offset 5: empty parameter name`},
		{"user:{1d}", `at offset 6: invalid parameter name "1d"`},
		{"user:{a-b}", `invalid parameter name "a-b"`},
		{"user:{a b}", `invalid parameter name "a b"`},
		{"user:{a{b}}", `at offset 7: '{' inside a parameter`},
		{"a:{id}:b:{id}", `at offset 10: duplicate parameter "id"`},
		{"a:{x}{y}", `at offset 5: parameter follows parameter "x" with no literal text`},
		{"{id}", `template has no literal text`},
		{"}", `stray '}'`},
		{"{", `unclosed '{'`},
	} {
		tmpl, err := ParseTemplate(tc.src)
		require.ErrorIs(t, err, ErrInvalidTemplate, tc.src)
		require.ErrorContains(t, err, tc.msg, tc.src)
		require.Nil(t, tmpl)
	}
}
