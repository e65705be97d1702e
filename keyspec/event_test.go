package keyspec

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const shopPolicy = `version: 1
classes:
  critical: {ttl: 1m, weight: 6, second_delete: 500ms}
  standard: {ttl: 10m, weight: 3}
  bulk: {ttl: 1h}
families:
  product: {template: "product:{id}", class: critical, owner: catalog}
  product_page: {template: "product_page:{id}:{page}", class: bulk, max_keys: 50, mode: shadow}
  price: {template: "price:{sku}:{currency}", class: critical}
  catalog: {template: "catalog", class: standard, strategy: version}
  feed: {template: "feed:{user_id}", class: standard, strategy: version, hash_tag: user_id, mode: "off"}
events:
  product.updated:
    owner: catalog
    attributes: [id]
    invalidates:
      - family: product
      - family: product_page
        wildcard: [page]
      - family: price
        params: {sku: id}
        wildcard: [currency]
      - catalog
  post.created:
    attributes: [author]
    invalidates:
      - {family: feed, params: {user_id: author}}
`

func TestEventsResolve(t *testing.T) {
	t.Parallel()

	p, err := Parse("shop.yaml", []byte(shopPolicy))
	require.NoError(t, err)
	require.Empty(t, p.Warnings())
	require.Equal(t, []string{"post.created", "product.updated"}, p.EventNames())
	require.Equal(t, []string{"product.updated"}, p.EventsOf("price"))
	require.Equal(t, ModeShadow, p.Families["product_page"].Mode)
	require.Equal(t, ModeOff, p.Families["feed"].Mode)
	require.Equal(t, ModeEnforce, p.Families["product"].Mode)
	require.Equal(t, 50, p.Families["product_page"].MaxKeys)
	require.Equal(t, map[string]int{"invalidator-critical": 6, "invalidator-standard": 3, "invalidator-bulk": 1}, p.QueueWeights())
	require.Equal(t, "500ms", p.Classes["critical"].SecondDelete.String())

	actions, refused, err := p.Resolve("product.updated", map[string]string{"id": "7"})
	require.NoError(t, err)
	require.Empty(t, refused)
	var got []string
	for _, a := range actions {
		got = append(got, fmt.Sprintf("%s %s %s%s %v", a.Kind, a.Family.Name, a.Key, a.Pattern, a.Params))
	}
	require.Equal(t, []string{
		"delete product product:7 map[id:7]",
		"pattern product_page product_page:7:* map[id:7]",
		"pattern price price:7:* map[sku:7]",
		"bump catalog {catalog}#ver map[]",
	}, got)

	// Values are escaped in patterns: an id of "*" matches only itself.
	actions, _, err = p.Resolve("product.updated", map[string]string{"id": "*"})
	require.NoError(t, err)
	require.Equal(t, `product_page:\*:*`, actions[1].Pattern)

	actions, _, err = p.Resolve("post.created", map[string]string{"author": "42"})
	require.NoError(t, err)
	require.Equal(t, "feed:{42}#ver", actions[0].Key)

	for _, tc := range []struct {
		event  string
		attrs  map[string]string
		target error
		msg    string
	}{
		{"product.deleted", map[string]string{"id": "1"}, ErrUnknownEvent, `unknown event "product.deleted" in policy "shop.yaml" (declared: post.created, product.updated)`},
		{"product.updated", nil, ErrMissingParam, `event "product.updated": missing parameter: attribute "id" is required (attributes: id)`},
		{"product.updated", map[string]string{"id": "1", "sku": "2"}, ErrUnknownParam, `event "product.updated": unknown parameter "sku": the event's attributes are id`},
		{"product.updated", map[string]string{"id": ""}, ErrEmptyParam, `event "product.updated": empty parameter value for attribute "id"`},
	} {
		_, _, err := p.Resolve(tc.event, tc.attrs)
		require.ErrorIs(t, err, tc.target, tc.msg)
		require.ErrorContains(t, err, tc.msg)
	}

	// A value that would move a family's hash tag renders no key of it:
	// only that invalidation is refused.
	actions, refused, err = p.Resolve("post.created", map[string]string{"author": "4}2"})
	require.NoError(t, err)
	require.Empty(t, actions)
	require.Len(t, refused, 1)
	require.Equal(t, "feed", refused[0].Family.Name)
	require.Equal(t, ActionBump, refused[0].Kind)
	require.ErrorIs(t, refused[0].Err, ErrUnsafeHashTag)
	require.ErrorContains(t, refused[0].Err, `hash-tag parameter "user_id" contains '}'`)
	err = RefusedAll("post.created", actions, refused)
	require.ErrorIs(t, err, ErrUnsafeHashTag)
	require.ErrorContains(t, err, `event "post.created" invalidates nothing with these attribute values`)
}

// TestPolicyLint checks that each mistake the policy linter promises to
// catch is reported with its file, line and field, all in one run.
func TestPolicyLint(t *testing.T) {
	t.Parallel()

	src := strings.Join([]string{
		/* 1 */ "version: 1",
		/* 2 */ "classes:",
		/* 3 */ "  standard: {ttl: 1m, jitter: 0.9, weight: 0}",
		/* 4 */ "families:",
		/* 5 */ "  user: {template: \"user:{id}\", class: standard}",
		/* 6 */ "  account: {template: \"user:{uid}\", class: standard}",
		/* 7 */ "  page: {template: \"page:{id}\", class: standart}",
		/* 8 */ "  feed: {template: \"feed:{id}\", class: standard, strategy: version, max_keys: 5}",
		/* 9 */ "  doc: {template: \"doc{tenant}:{id}\", class: standard}",
		/* 10 */ "events:",
		/* 11 */ "  user.updated:",
		/* 12 */ "    attributes: [id]",
		/* 13 */ "    invalidates: []",
		/* 14 */ "  doc.updated:",
		/* 15 */ "    attributes: [id, extra]",
		/* 16 */ "    invalidates:",
		/* 17 */ "      - doc",
		/* 18 */ "      - {family: feed, wildcard: [id]}",
		/* 19 */ "      - {family: nope}",
		/* 20 */ "      - {family: user, params: {id: uid}}",
		/* 21 */ "      - {family: doc, wildcard: [tenant]}",
		/* 22 */ "  Bad Name:",
		/* 23 */ "    attributes: []",
		/* 24 */ "    invalidates: [page]",
	}, "\n") + "\n"

	verrs := parseErrors(t, src)
	var got []string
	for _, e := range verrs {
		require.Equal(t, "policy.yaml", e.File)
		got = append(got, fmt.Sprintf("%d %s: %s", e.Line, e.Field, e.Msg))
	}
	want := []string{
		`3 classes.standard.jitter: jitter 0.9 is outside [0, 0.5]`,
		`3 classes.standard.weight: weight 0 is out of range`,
		`6 families.account: can render the same key as family "`,
		`7 families.page.class: unknown class "standart"`,
		`13 events.user.updated.invalidates: invalidates nothing`,
		`17 events.doc.updated.invalidates[0]: family doc: template parameter "tenant" is not provided`,
		`18 events.doc.updated.invalidates[1]: family feed: a version family cannot take wildcards`,
		`19 events.doc.updated.invalidates[2].family: unknown family "nope"`,
		`20 events.doc.updated.invalidates[3]: family user: params: id takes attribute "uid", which the event does not declare`,
		`21 events.doc.updated.invalidates[4]: family doc: the wildcards make an unsafe pattern`,
		`22 events.Bad Name: invalid event name "Bad Name"`,
		`24 events.Bad Name.invalidates[0]: family page: template parameter "id" is not provided`,
	}
	require.Len(t, got, len(want), "got:\n%s", strings.Join(got, "\n"))
	for i := range want {
		require.True(t, strings.HasPrefix(got[i], want[i]), "error %d:\n got %s\nwant %s...", i, got[i], want[i])
	}
}

func TestPolicyWarnings(t *testing.T) {
	t.Parallel()

	p, err := Parse("w.yaml", []byte(`version: 1
classes: {standard: {ttl: 1m}}
families:
  user: {template: "user:{id}", class: standard}
  lonely: {template: "lonely:{id}", class: standard}
events:
  user.updated:
    attributes: [id, reason]
    invalidates: [user]
`))
	require.NoError(t, err)
	var got []string
	for _, w := range p.Warnings() {
		got = append(got, w.Error())
	}
	require.Len(t, got, 2)
	require.Contains(t, got[0], `w.yaml:5:3: families.lonely: no event invalidates family "lonely"`)
	require.Contains(t, got[1], `w.yaml:8:17: events.user.updated.attributes: attribute "reason" gives no template parameter`)

	// Without events, nothing is expected to trigger families.
	p, err = Parse("w.yaml", []byte("version: 1\nclasses: {standard: {}}\nfamilies: {user: {template: \"user:{id}\", class: standard}}\n"))
	require.NoError(t, err)
	require.Empty(t, p.Warnings())
}

func TestOverlap(t *testing.T) {
	t.Parallel()

	fam := func(tmpl string, opts FamilyOptions) *Family {
		f, err := NewFamily("f", tmpl, opts)
		require.NoError(t, err)
		return f
	}
	del := FamilyOptions{}
	ver := FamilyOptions{Strategy: StrategyVersion, TTL: 1}
	for _, tc := range []struct {
		a, b     *Family
		overlaps bool
		example  string
	}{
		{fam("user:{id}", del), fam("user:{uid}", del), true, "user:x"},
		{fam("user:{id}:profile", del), fam("user:{id}:sessions", del), false, ""},
		{fam("product:{sku}:details", del), fam("product:{sku}:price:{currency}", del), false, ""},
		{fam("product:{id}", del), fam("product:{sku}:details", del), false, ""},
		{fam("a:{x}:b", del), fam("a:c:{y}", del), true, "a:c:b"},
		{fam("user:{id}", FamilyOptions{HashTag: "id"}), fam("user:{id}", del), true, "user:{x}"},
		// A version family's keys are its version and data keys.
		{fam("feed:{id}", ver), fam("feed:{id}", del), false, ""},
		{fam("feed:{id}", FamilyOptions{Strategy: StrategyVersion, TTL: 1, HashTag: "id"}), fam("feed:{id}#v{n}", del), true, "feed:{x}#ver"},
		{fam("catalog", ver), fam("{catalog}#{x}", del), true, "{catalog}#ver"},
		{fam("page:{n}", del), fam("page:{n}x", del), true, "page:xx"},
	} {
		key, ok, decided := newOverlapChecker(0).families(tc.a, langConv, tc.b, langConv)
		require.True(t, decided)
		require.Equal(t, tc.overlaps, ok, "%s vs %s", tc.a.Template, tc.b.Template)
		require.Equal(t, tc.example, key, "%s vs %s", tc.a.Template, tc.b.Template)
		if ok {
			// The example really is a key of both, checked independently.
			require.True(t, matchesShape(t, tc.a, key) && matchesShape(t, tc.b, key), key)
		}
		_, back, _ := newOverlapChecker(0).families(tc.b, langConv, tc.a, langConv)
		require.Equal(t, ok, back, "symmetric")
	}
}

// matchesShape checks key against a family's key shapes by brute force:
// with Go regular expressions built from the template, undeclared values
// holding no ':' (keys in these tests are ASCII, where Go's regexp and the
// byte-level automata agree).
func matchesShape(t *testing.T, f *Family, key string) bool {
	t.Helper()
	var b strings.Builder
	for _, s := range f.Template.segs {
		switch d := f.decls[s.text]; {
		case !s.isParam:
			b.WriteString(regexp.QuoteMeta(s.text))
		case s.text == f.HashTag && d != nil:
			b.WriteString(`\{(?:` + d.Match + `)\}`)
		case s.text == f.HashTag:
			b.WriteString(`\{[^:{}]+\}`)
		case d != nil:
			b.WriteString(`(?:` + d.Match + `)`)
		default:
			b.WriteString(`[^:]+`)
		}
	}
	base := b.String()
	res := []string{base}
	if f.Strategy == StrategyVersion {
		if f.HashTag == "" {
			base = `\{` + base + `\}`
		}
		res = []string{base + "#ver", base + "#v[0-9]+"}
	}
	for _, re := range res {
		if regexp.MustCompile("^(?:" + re + ")$").MatchString(key) {
			return true
		}
	}
	return false
}
