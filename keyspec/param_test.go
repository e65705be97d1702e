package keyspec

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// threeFamilies is the example of issue 10: a pattern delete of product
// ("product:*") also matched the keys of product_price and
// product_details. decl is spliced into product's declaration, prices and
// details into the others'.
func threeFamilies(product, prices, details string) string {
	return `version: 1
classes:
  standard: {ttl: 1m}
families:
  product:
    template: "product:{id}"
    class: standard` + product + `
  product_price:
    template: "product:{sku}:price:{currency}"
    class: standard` + prices + `
  product_details:
    template: "product:{id}:details"
    class: standard` + details + `
`
}

const (
	declID       = "\n    params: {id: {match: '[0-9]+'}}"
	declPrice    = "\n    params: {sku: {match: '[0-9]+'}, currency: {match: '[A-Z]{3}'}}"
	declDetailID = "\n    params: {id: {match: '[0-9]+'}}"
)

// Without declarations, lint warns about each family whose pattern delete
// takes another family's ordinary keys with it, by name; with
// declarations that rule it out, it does not.
func TestCaptureWarnings(t *testing.T) {
	t.Parallel()

	warnings := func(src string) []string {
		t.Helper()
		p, err := Parse("p.yaml", []byte(src))
		require.NoError(t, err)
		var out []string
		for _, w := range p.Warnings() {
			out = append(out, w.Error())
		}
		return out
	}

	got := warnings(threeFamilies("", "", ""))
	require.Len(t, got, 2, "%q", got)
	require.Equal(t, `p.yaml:5:3: families.product: a pattern delete of family "product" (product:*) also matches keys of families `+
		`"product_details" (for example "product:x:details") and "product_price" (for example "product:x:price:x"), `+
		`because an undeclared parameter matches any bytes, ':' too, and the worker would delete them with it; `+
		`to keep it to its family, declare params.id of family "product" (e.g. {match: '[0-9]+'}) so that no key fits both`, got[0])
	// The details delete "product:*:details" takes a price in the currency
	// "details" with it: what a declared currency rules out.
	require.Contains(t, got[1], `p.yaml:11:3: families.product_details: a pattern delete of family "product_details" (product:*:details) also matches keys of family "product_price" (for example "product:x:price:details")`)

	got = warnings(threeFamilies(declID, "", ""))
	require.Len(t, got, 1, "%q", got)
	require.Contains(t, got[0], `families.product_details:`)

	require.Empty(t, warnings(threeFamilies(declID, declPrice, "")))
	require.Empty(t, warnings(threeFamilies(declID, "", declDetailID)))

	// A version family's keys can be captured too, but it deletes nothing.
	// Its keys fit the pattern only with a ':' in a value; that is
	// reported too (with such an example) when it is the only way.
	got = warnings(`version: 1
classes: {standard: {ttl: 1m}}
families:
  feed: {template: "feed:{user_id}", class: standard, strategy: version, hash_tag: user_id}
  feed_page: {template: "feed:{user_id}:{page}", class: standard}
`)
	require.Len(t, got, 1, "%q", got)
	require.Contains(t, got[0], `families.feed_page: a pattern delete of family "feed_page" (feed:*:*) also matches keys of family "feed" (for example "feed:{:}#ver")`)
	require.Contains(t, got[0], `declare params.user_id and params.page of family "feed_page"`)
}

// Only keys that could coincide when a value holds a ':' are a warning;
// keys that coincide without are an error, as before, and declarations
// decide both exactly.
func TestOverlapErrorsUseDeclarations(t *testing.T) {
	t.Parallel()

	src := func(a, b string) string {
		return `version: 1
classes: {standard: {ttl: 1m}}
families:
  by_id: {template: "item:{id}", class: standard` + a + `}
  by_slug: {template: "item:{slug}", class: standard` + b + `}
`
	}
	_, err := Parse("p.yaml", []byte(src("", "")))
	require.ErrorContains(t, err, `families.by_slug: can render the same key as family "by_id" (for example "item:x")`)
	_, err = Parse("p.yaml", []byte(src(", params: {id: {match: '[0-9]+'}}", "")))
	require.ErrorContains(t, err, `(for example "item:0")`, "an undeclared slug may still be digits")
	p, err := Parse("p.yaml", []byte(src(", params: {id: {match: '[0-9]+'}}", ", params: {slug: {match: '[a-z][a-z0-9-]*'}}")))
	require.NoError(t, err, "digits and slugs starting with a letter never meet")
	require.Empty(t, p.Warnings())
	// A declaration that allows ':' is taken at its word.
	_, err = Parse("p.yaml", []byte(`version: 1
classes: {standard: {ttl: 1m}}
families:
  a: {template: "a:{x}", class: standard, params: {x: {match: '[a-z:]+'}}}
  b: {template: "a:{y}:b", class: standard}
`))
	require.ErrorContains(t, err, `families.b: can render the same key as family "a" (for example "a:x:b")`)
}

// Rendering refuses a value outside its declaration, everywhere a key is
// rendered, with an error that names family, parameter, value and
// declaration.
func TestRenderRefusesUndeclaredValue(t *testing.T) {
	t.Parallel()

	p, err := Parse("p.yaml", []byte(`version: 1
classes: {standard: {ttl: 1m}}
families:
  product: {template: "product:{id}", class: standard, params: {id: {match: '[0-9]+'}}}
  feed: {template: "feed:{user_id}", class: standard, strategy: version, hash_tag: user_id, params: {user_id: {match: '[0-9]+'}}}
events:
  product.updated: {attributes: [id], invalidates: [product]}
  post.created: {attributes: [user_id], invalidates: [feed]}
`))
	require.NoError(t, err)
	product, feed := p.Families["product"], p.Families["feed"]
	require.Equal(t, map[string]Param{"id": {Match: "[0-9]+"}}, product.Params, "a policy family's Params are its declarations")
	bad := map[string]string{"id": "1:price:EUR"}
	want := `family "product": parameter value outside its declaration: parameter "id" value "1:price:EUR" does not match its declaration "[0-9]+"`

	_, err = product.Key(bad)
	require.ErrorIs(t, err, ErrInvalidParam)
	require.ErrorContains(t, err, "render "+want)
	_, err = product.Pattern(bad)
	require.ErrorIs(t, err, ErrInvalidParam)
	require.ErrorContains(t, err, "pattern "+want)
	_, err = product.Matcher(bad)
	require.ErrorIs(t, err, ErrInvalidParam)
	actions, refused, err := p.Resolve("product.updated", bad)
	require.NoError(t, err, "a value outside a declaration refuses the invalidation, not the publication")
	require.Empty(t, actions)
	require.Len(t, refused, 1)
	require.ErrorIs(t, refused[0].Err, ErrInvalidParam)
	require.ErrorContains(t, refused[0].Err, "render "+want)
	err = RefusedAll("product.updated", actions, refused)
	require.ErrorIs(t, err, ErrInvalidParam)
	require.ErrorContains(t, err, `event "product.updated" invalidates nothing with these attribute values, every family refuses them: render `+want)

	badFeed := map[string]string{"user_id": "42x"}
	_, err = feed.VersionKey(badFeed)
	require.ErrorIs(t, err, ErrInvalidParam)
	require.ErrorContains(t, err, `version key family "feed": parameter value outside its declaration: parameter "user_id" value "42x" does not match its declaration "[0-9]+"`)
	_, err = feed.DataKey(badFeed, 1)
	require.ErrorIs(t, err, ErrInvalidParam)
	_, err = feed.DataKeyPrefix(badFeed)
	require.ErrorIs(t, err, ErrInvalidParam)
	_, refused, err = p.Resolve("post.created", badFeed)
	require.NoError(t, err)
	require.Len(t, refused, 1)
	require.ErrorIs(t, refused[0].Err, ErrInvalidParam)

	// Declared values render as before; a long or binary value is quoted
	// and cut short in the message.
	key, err := product.Key(map[string]string{"id": "7"})
	require.NoError(t, err)
	require.Equal(t, "product:7", key)
	_, err = product.Key(map[string]string{"id": strings.Repeat("\xff", 100)})
	require.ErrorContains(t, err, `value "\xff\xff`)
	require.ErrorContains(t, err, `... (100 bytes)`)

	// Families built in code declare through FamilyOptions.Params.
	// The family keeps its own copy of the map.
	params := map[string]Param{"id": {Match: "[0-9]+"}}
	f, err := NewFamily("product", "product:{id}", FamilyOptions{Params: params})
	require.NoError(t, err)
	params["id"] = Param{Match: "[a-z]+"}
	require.Equal(t, map[string]Param{"id": {Match: "[0-9]+"}}, f.Params)
	_, err = f.Key(bad)
	require.ErrorIs(t, err, ErrInvalidParam)
	_, err = NewFamily("product", "product:{id}", FamilyOptions{Params: map[string]Param{"sku": {Match: "[0-9]+"}}})
	require.ErrorContains(t, err, `family "product": params: "sku" is not a parameter of template "product:{id}" (parameters: id)`)
	_, err = NewFamily("product", "product:{id}", FamilyOptions{Params: map[string]Param{"id": {Match: "[0-9"}}})
	require.ErrorContains(t, err, `family "product": params.id: match "[0-9" is not a valid regular expression: missing closing ]`)
}

func TestParamDeclarationErrors(t *testing.T) {
	t.Parallel()

	const head = "version: 1\nclasses: {standard: {ttl: 1m}}\nfamilies:\n  product:\n    template: \"product:{id}\"\n    class: standard\n"
	for _, tc := range []struct{ params, want string }{
		{`params: {sku: {match: '[0-9]+'}}`, `7:14: families.product.params.sku: "sku" is not a parameter of template "product:{id}" (parameters: id)`},
		{`params: {id: '[0-9]+'}`, `families.product.params.id: must be a declaration such as {match: '[0-9]+'}, not the value "[0-9]+" (in a family, params declares the values a parameter takes; in an event, params maps parameters to attributes)`},
		{`params: {id: sku}`, `not the value "sku" (in a family, params declares`},
		{`params: [id]`, `families.product.params: must be a mapping of template parameters to declarations, e.g. params: {id: {match: '[0-9]+'}}, not a list`},
		{`params: {id: {}}`, `families.product.params.id.match: is required`},
		{`params: {id: {regexp: '[0-9]+'}}`, `families.product.params.id.regexp: unknown field "regexp"; known fields: match`},
		{`params: {id: {match: '[0-9'}}`, `families.product.params.id.match: match "[0-9" is not a valid regular expression: missing closing ]: ` + "`[0-9`"},
		{`params: {id: {match: ''}}`, `match is empty`},
		{`params: {id: {match: 'é+'}}`, `has a non-ASCII character`},
		{`params: {id: {match: '\x{e9}+'}}`, `has the non-ASCII character 'é'`},
		{`params: {id: {match: '\pL+'}}`, `has a class with some non-ASCII characters`},
		{`params: {id: {match: 'a\bb'}}`, `uses an anchor or \b inside the expression`},
		{`params: {id: {match: 'a|^b'}}`, `uses an anchor or \b inside the expression`},
		{`params: {id: {match: 'x*()?'}}`, ``},
		{`params: {id: {match: '()'}}`, `matches no value but the empty one`},
		{`params: {id: {match: '[^\x00-\x{10FFFF}]'}}`, `matches no value but the empty one`},
		{`params: {id: {match: '[0-9]{1000}[0-9]{1000}'}}`, `is too large`},
	} {
		_, err := Parse("p.yaml", []byte(head+"    "+tc.params+"\n"))
		if tc.want == "" {
			require.NoError(t, err, tc.params)
			continue
		}
		require.ErrorContains(t, err, tc.want, tc.params)
	}
}

// An attribute given to declared parameters needs a value all of them
// match, or every publication of its event would be refused.
func TestAttributeDeclarationsMustAgree(t *testing.T) {
	t.Parallel()

	src := func(pageDecl string) string {
		return `version: 1
classes: {standard: {ttl: 1m}}
families:
  product: {template: "product:{id}", class: standard, params: {id: {match: '[0-9]+'}}}
  product_page: {template: "product_page:{id}:{page}", class: standard, params: {id: {match: '` + pageDecl + `'}}}
events:
  product.updated:
    attributes: [id]
    invalidates: [product, {family: product_page, wildcard: [page]}]
`
	}
	_, err := Parse("p.yaml", []byte(src("[a-z]+")))
	require.ErrorContains(t, err, `p.yaml:8:17: events.product.updated.attributes: no value of attribute "id" matches all the declarations it is given to `+
		`(product.id "[0-9]+", product_page.id "[a-z]+"), so every publication would be refused`)
	p, err := Parse("p.yaml", []byte(src("[0-9a-f]+")))
	require.NoError(t, err)
	actions, refused, err := p.Resolve("product.updated", map[string]string{"id": "7"})
	require.NoError(t, err)
	require.Len(t, actions, 2)
	require.Empty(t, refused)
	// "a" fits product_page's declaration, not product's: only product's
	// invalidation is refused.
	actions, refused, err = p.Resolve("product.updated", map[string]string{"id": "a"})
	require.NoError(t, err)
	require.Len(t, actions, 1)
	require.Equal(t, "product_page", actions[0].Family.Name)
	require.Equal(t, "product_page:a:*", actions[0].Pattern)
	require.Len(t, refused, 1)
	require.Equal(t, "product", refused[0].Family.Name)
	require.Equal(t, ActionDelete, refused[0].Kind)
	require.ErrorIs(t, refused[0].Err, ErrInvalidParam)
	require.NoError(t, RefusedAll("product.updated", actions, refused))
}

// Declarations are matched against bytes, anchored: '.' and negated classes
// take any byte (but '\n' for '.'), one at a time.
func TestParamMatchesBytes(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		match, value string
		want         bool
	}{
		{"[0-9]+", "42", true},
		{"[0-9]+", "42a", false},
		{"[0-9]+", "a42", false},
		{"^[0-9]+$", "42", true}, // anchors written out of habit are fine
		{"^[0-9]+$", "4\n2", false},
		{"[^:]+", "\xff\x00é", true},
		{"[^:]+", "a:b", false},
		{".+", "é", true},
		{".", "é", false}, // two bytes
		{"..", "é", true},
		{".+", "a\nb", false},
		{"(?s).+", "a\nb", true},
		{"(?i)[a-f0-9]{2}", "Af", true},
		{"(?i)[a-z]+", "\xc5\xbf", false}, // ſ folds to s as a rune, not as bytes
		{"[A-Z]{3}", "EUR", true},
		{"[A-Z]{3}", "EURO", false},
		{"a|bc", "bc", true},
		{"a|bc", "abc", false},
		{`\D+`, "\xff", true},
	} {
		d, msg := compileParam(Param{Match: tc.match})
		require.Empty(t, msg, tc.match)
		require.Equal(t, tc.want, d.match(tc.value), "%q on %q", tc.match, tc.value)
		require.Equal(t, tc.want, d.nfa.match(tc.value), "simulated: %q on %q", tc.match, tc.value)
	}
}

// A pattern delete's matcher: the template with given values literal and
// wildcards by declaration, or any bytes (exactly what the glob matches)
// when undeclared.
func TestMatcher(t *testing.T) {
	t.Parallel()

	p, err := Parse("p.yaml", []byte(threeFamilies(declID, declPrice, "")))
	require.NoError(t, err)
	product, price := p.Families["product"], p.Families["product_price"]

	m, err := product.Matcher(nil)
	require.NoError(t, err)
	require.Equal(t, "product:*", m.Pattern())
	require.True(t, m.Filters())
	for key, want := range map[string]bool{
		"product:1": true, "product:123": true, "product:1:price:EUR": false, "product:1:details": false,
		"product:": false, "product:x": false, "product:1\n": false,
	} {
		require.Equal(t, want, m.Match(key), key)
		require.True(t, !want || redisMatch(m.Pattern(), key), "a filter never widens the pattern: %q", key)
	}

	m, err = price.Matcher(map[string]string{"sku": "1"})
	require.NoError(t, err)
	require.Equal(t, "product:1:price:*", m.Pattern())
	require.True(t, m.Match("product:1:price:EUR"))
	require.False(t, m.Match("product:1:price:EURO"))
	require.False(t, m.Match("product:12:price:EUR"))

	// Everything given: one key, no wildcard to filter.
	m, err = price.Matcher(map[string]string{"sku": "1", "currency": "EUR"})
	require.NoError(t, err)
	require.False(t, m.Filters())
	require.True(t, m.Match("product:1:price:EUR"))

	// Undeclared: the matcher is the glob, byte for byte.
	details := p.Families["product_details"]
	m, err = details.Matcher(nil)
	require.NoError(t, err)
	require.False(t, m.Filters())
	for _, key := range []string{"product:1:details", "product::details", "product:a:b:details", "product:\xff:details", "product:1:detailsx", "xproduct:1:details"} {
		require.Equal(t, redisMatch(m.Pattern(), key), m.Match(key), key)
	}

	// A declared hash-tag parameter is matched inside its braces.
	perm, err := NewFamily("permissions", "perm:{user_id}:{resource}", FamilyOptions{HashTag: "user_id",
		Params: map[string]Param{"user_id": {Match: "[0-9]+"}}})
	require.NoError(t, err)
	m, err = perm.Matcher(nil)
	require.NoError(t, err)
	require.Equal(t, "perm:{*}:*", m.Pattern())
	require.True(t, m.Match("perm:{42}:doc:7"), "an undeclared resource takes any bytes")
	require.False(t, m.Match("perm:{4x}:doc"))
	m, err = perm.Matcher(map[string]string{"user_id": "42"})
	require.NoError(t, err)
	require.False(t, m.Filters(), "the only wildcard is undeclared")
	key, err := perm.Key(map[string]string{"user_id": "42", "resource": "a:b"})
	require.NoError(t, err)
	require.True(t, m.Match(key))

	// KeysMatcher: every key the family renders, version and data keys of
	// a version family included.
	feed, err := NewFamily("feed", "feed:{user_id}", FamilyOptions{Strategy: StrategyVersion, TTL: 1, HashTag: "user_id",
		Params: map[string]Param{"user_id": {Match: "[0-9]+"}}})
	require.NoError(t, err)
	km := feed.KeysMatcher()
	require.True(t, km.Match("feed:{42}#ver"))
	require.True(t, km.Match("feed:{42}#v1700000000000"))
	require.False(t, km.Match("feed:{42}"))
	require.False(t, km.Match("feed:{x}#ver"))
	_, err = feed.Matcher(nil)
	require.ErrorIs(t, err, ErrVersioned)

	// Policy.Captures lists exactly the families a delete can reach.
	p, err = Parse("p.yaml", []byte(threeFamilies("", "", "")))
	require.NoError(t, err)
	caps, err := p.Captures(p.Families["product"], nil)
	require.NoError(t, err)
	require.Equal(t, []Capture{{"product_details", "product:x:details"}, {"product_price", "product:x:price:x"}}, caps)
	caps, err = p.Captures(p.Families["product"], map[string]string{"id": "1"})
	require.NoError(t, err)
	require.Empty(t, caps)
	p, err = Parse("p.yaml", []byte(threeFamilies(declID, "", "")))
	require.NoError(t, err)
	caps, err = p.Captures(p.Families["product"], nil)
	require.NoError(t, err)
	require.Empty(t, caps)
}

// The intersection finds a shortest common string, or proves there is none;
// checked against brute force over short strings of a small alphabet.
func TestIntersectAgreesWithBruteForce(t *testing.T) {
	t.Parallel()

	exprs := []string{"a+", "[ab]+", "a:b", "(ab)+", "a*b", "b+:a", "[^:]+", ":+", "a|b:", "(a|b)(a|b)", "[a:]{2,3}"}
	alphabet := "ab:"
	var all []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		all = append(all, prefix)
		if n == 0 {
			return
		}
		for i := range len(alphabet) {
			gen(prefix+alphabet[i:i+1], n-1)
		}
	}
	gen("", 5)
	for _, x := range exprs {
		for _, y := range exprs {
			dx, msg := compileParam(Param{Match: x})
			require.Empty(t, msg)
			dy, msg := compileParam(Param{Match: y})
			require.Empty(t, msg)
			rx, ry := regexp.MustCompile("^(?:"+x+")$"), regexp.MustCompile("^(?:"+y+")$")
			shortest := ""
			found := false
			for _, s := range all {
				if rx.MatchString(s) && ry.MatchString(s) && (!found || len(s) < len(shortest)) {
					shortest, found = s, true
				}
			}
			key, ok, decided := intersect(dx.nfa, dy.nfa)
			require.True(t, decided)
			name := fmt.Sprintf("%s & %s", x, y)
			if !found {
				// Nothing up to 5 bytes; none of these has a longer first witness.
				require.False(t, ok, "%s: %q", name, key)
				continue
			}
			require.True(t, ok, name)
			require.Len(t, key, len(shortest), "%s: a shortest witness", name)
			require.True(t, rx.MatchString(key) && ry.MatchString(key), "%s: %q", name, key)
		}
	}
}

// A class that names ſ or K (the two non-ASCII runes that fold to ASCII
// letters) has no meaning for bytes unless (?i) put it there: Go's
// [^\x{17f}]+ refuses "ſ", which a byte-level class of every high byte
// would take. Only (?i) may add or remove them, along with s and k.
func TestParamClassesNamingFoldedRunes(t *testing.T) {
	t.Parallel()

	for _, expr := range []string{`[^\x{17f}]+`, `[^\x{212a}]+`, `[a\x{17f}]`, `s|\x{17f}`, `[^k\x{17f}]+`} {
		_, msg := compileParam(Param{Match: expr})
		require.Contains(t, msg, "non-ASCII", "%s", expr)
	}
	for expr, value := range map[string]string{
		`(?i)[a-z]+`: "Sk", `(?i)[^k]+`: "\xff", `[^s]+`: "\xff", `(?i)[^a-z]+`: "\xff", `(?i)[s]`: "S",
		`(?i:[a-c])x`: "Bx", `[^:]+`: "\xff", `(?i)[^ks]+`: "\xff",
	} {
		d, msg := compileParam(Param{Match: expr})
		require.Empty(t, msg, expr)
		require.True(t, d.match(value), "%s on %q", expr, value)
	}
}
