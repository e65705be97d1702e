package keyspec

import (
	"fmt"
	"path"
	"testing"

	"github.com/stretchr/testify/require"
)

// odd YAML in the events section must give errors, never panics.
func TestOddEventYAMLNoPanic(t *testing.T) {
	t.Parallel()
	head := "version: 1\nclasses:\n  standard: {ttl: 1m}\nfamilies:\n  product: {template: \"product:{id}\", class: standard}\n  ver: {template: \"v:{id}\", class: standard, strategy: version}\n"
	for i, ev := range []string{
		"events:\n  e:\n",
		"events: ~\n",
		"events: [a, b]\n",
		"events:\n  e: {attributes: ~, invalidates: [product]}\n",
		"events:\n  e: {attributes: [id], invalidates: [~]}\n",
		"events:\n  e: {attributes: [id], invalidates: [[]]}\n",
		"events:\n  e: {attributes: [id], invalidates: [{}]}\n",
		"events:\n  e: {attributes: [id], invalidates: [{family: ~}]}\n",
		"events:\n  e: {attributes: [id], invalidates: [{family: product, params: ~}]}\n",
		"events:\n  e: {attributes: [id], invalidates: [{family: product, params: {id: ~}}]}\n",
		"events:\n  e: {attributes: [id], invalidates: [{family: product, params: [id]}]}\n",
		"events:\n  e: {attributes: [id], invalidates: [{family: product, wildcard: ~}]}\n",
		"events:\n  e: {attributes: [id], invalidates: [{family: product, wildcard: id}]}\n",
		"events:\n  e: {attributes: [id], invalidates: [{family: product, wildcard: [id]}]}\n",
		"events:\n  e: {attributes: [id], invalidates: [{family: ver, wildcard: [id]}]}\n",
		"events:\n  e: {attributes: [id], invalidates: [{family: [product]}]}\n",
		"events:\n  e: {attributes: [[id]], invalidates: [product]}\n",
		"events:\n  e: {attributes: [id, id], invalidates: [product]}\n",
		"events:\n  e: &a {attributes: [id], invalidates: [product]}\n  f: *a\n",
		"events:\n  e: {attributes: &x [id], invalidates: [{family: product, params: *x}]}\n",
		"events:\n  e: {attributes: [id], invalidates: product}\n",
		"events:\n  e: {attributes: [id], invalidates: {family: product}}\n",
		"events:\n  ~: {attributes: [id], invalidates: [product]}\n",
		"events:\n  e: {attributes: [], invalidates: [product]}\n",
		"events:\n  e: {attributes: [id], invalidates: [{family: product, params: {id: id, x: id}}]}\n",
		"events:\n  e: {attributes: [id], invalidates: [{family: product, params: {id: \"\"}}]}\n",
		"events:\n  e: {attributes: [id], owner: ~, description: [x], invalidates: [product]}\n",
		"events:\n  e: !!binary aGVsbG8=\n",
		"events:\n  e: {<<: {attributes: [id]}, invalidates: [product]}\n",
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			require.NotPanics(t, func() { _, _ = Parse("p.yaml", []byte(head+ev)) }, ev)
		})
	}
}

// checkOverlaps is documented as exact ("two families sharing a key
// would invalidate each other's entries"), but a pattern delete's '*' also
// matches ':', so a wildcard invalidation of one family deletes the keys of
// a second family that the overlap check passed. Here the event
// catalog.reset with wildcard [id] on "product:{id}" deletes every
// "product:{id}:reviews" key as well (and counts them against product's
// max_keys / would_delete). The policy's author is warned at the family,
// whose every pattern delete (by an event or by hand) reaches that far,
// until a declaration of id keeps it to its family.
func TestWildcardPatternReachWarns(t *testing.T) {
	t.Parallel()
	policy := func(decl string) string {
		return `version: 1
classes:
  standard: {ttl: 1m}
families:
  product: {template: "product:{id}", class: standard` + decl + `}
  product_reviews: {template: "product:{id}:reviews", class: standard}
events:
  catalog.reset:
    attributes: []
    invalidates: [{family: product, wildcard: [id]}]
  reviews.changed:
    attributes: [id]
    invalidates: [product_reviews]
`
	}
	p, err := Parse("p.yaml", []byte(policy("")))
	require.NoError(t, err, "the overlap check passes these two families")
	acts, _, err := p.Resolve("catalog.reset", map[string]string{})
	require.NoError(t, err)
	require.Len(t, acts, 1)
	reviewKey, err := p.Families["product_reviews"].Key(map[string]string{"id": "7"})
	require.NoError(t, err)
	matched, err := path.Match(acts[0].Pattern, reviewKey) // same semantics as Redis glob for this pattern
	require.NoError(t, err)
	require.True(t, matched, "the premise: pattern %q matches %q", acts[0].Pattern, reviewKey)
	m, err := acts[0].Family.Matcher(acts[0].Params)
	require.NoError(t, err)
	require.False(t, m.Filters(), "nothing is declared, so nothing may be filtered")
	require.True(t, m.Match(reviewKey))
	// A Redis glob cannot say "no ':' here", so the policy author is warned.
	require.Len(t, p.Warnings(), 1)
	require.Contains(t, p.Warnings()[0].Error(), `p.yaml:5:3: families.product: a pattern delete of family "product" (product:*) also matches keys of family "product_reviews" (for example "product:x:reviews")`)
	require.Contains(t, p.Warnings()[0].Error(), `declare params.id of family "product"`)

	// Declared, the delete keeps to its family and the warning goes.
	p, err = Parse("p.yaml", []byte(policy(`, params: {id: {match: '[0-9]+'}}`)))
	require.NoError(t, err)
	require.Empty(t, p.Warnings())
	acts, _, err = p.Resolve("catalog.reset", map[string]string{})
	require.NoError(t, err)
	m, err = acts[0].Family.Matcher(acts[0].Params)
	require.NoError(t, err)
	require.True(t, m.Filters())
	require.False(t, m.Match(reviewKey))
	require.True(t, m.Match("product:7"))
}
