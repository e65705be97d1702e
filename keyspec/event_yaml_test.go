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
// product.updated with wildcard [id] on "product:{id}" deletes every
// "product:{id}:reviews" key as well (and counts them against product's
// max_keys / would_delete).
func TestWildcardPatternReachWarns(t *testing.T) {
	t.Parallel()
	p, err := Parse("p.yaml", []byte(`version: 1
classes:
  standard: {ttl: 1m}
families:
  product: {template: "product:{id}", class: standard}
  product_reviews: {template: "product:{id}:reviews", class: standard}
events:
  catalog.reset:
    attributes: []
    invalidates: [{family: product, wildcard: [id]}]
  reviews.changed:
    attributes: [id]
    invalidates: [product_reviews]
`))
	require.NoError(t, err, "the overlap check passes these two families")
	acts, err := p.Resolve("catalog.reset", map[string]string{})
	require.NoError(t, err)
	require.Len(t, acts, 1)
	reviewKey, err := p.Families["product_reviews"].Key(map[string]string{"id": "7"})
	require.NoError(t, err)
	matched, err := path.Match(acts[0].Pattern, reviewKey) // same semantics as Redis glob for this pattern
	require.NoError(t, err)
	require.True(t, matched, "the premise: pattern %q matches %q", acts[0].Pattern, reviewKey)
	// A Redis glob cannot say "no ':' here", so the policy author is warned.
	require.Len(t, p.Warnings, 1)
	require.Contains(t, p.Warnings[0].Error(), `p.yaml:8:3: events.catalog.reset.invalidates[0]: the pattern delete of family "product" also matches keys of family "product_reviews" (for example "product:x:reviews")`)
}
