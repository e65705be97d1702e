package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// threeFamilies is the example of issue 10, with product's id declared
// or not (decl), and an event that pattern-deletes product.
func threeFamilies(decl string) string {
	return `version: 1
classes:
  standard: {ttl: 10m}
families:
  product: {template: "product:{id}", class: standard` + decl + `}
  product_price: {template: "product:{sku}:price:{currency}", class: standard}
  product_details: {template: "product:{id}:details", class: standard}
events:
  catalog.reset:
    attributes: []
    invalidates: [{family: product, wildcard: [id]}]
`
}

var threeFamilyKeys = []string{"product:1", "product:1:price:EUR", "product:1:details"}

// The dry run counts what the worker would delete, and says when the
// pattern also matches other families' keys.
func TestFamilyDryRunCountsTheFamily(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	for _, k := range threeFamilyKeys {
		require.NoError(t, db.Client.Set(t.Context(), k, 1, 0).Err())
	}

	env := map[string]string{envRedisURL: db.URL, envPolicy: writePolicy(t, threeFamilies(""))}
	r := invoke(t, env, "", "enqueue", "family", "product", "--dry-run")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, "3 keys match product:* (family product) in the queue Redis (the cache too, unless --cache-redis says otherwise); "+
		"2 of them also fit the templates of families product_details (1) and product_price (1), and would be deleted with it: "+
		"declare params.id of family product in the policy to keep the delete to its family\n", r.stdout)

	env[envPolicy] = writePolicy(t, threeFamilies(`, params: {id: {match: '[0-9]+'}}`))
	r = invoke(t, env, "", "enqueue", "family", "product", "--dry-run")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, "1 key of family product matches product:* in the queue Redis (the cache too, unless --cache-redis says otherwise) "+
		"(3 scanned; 2 outside its declared params will be kept)\n", r.stdout)
	require.Equal(t, int64(3), db.Client.Exists(t.Context(), threeFamilyKeys...).Val(), "a dry run deleted")

	// A value outside the declaration is a usage error that says so.
	r = invoke(t, env, "", "enqueue", "family", "product", "id=abc", "--dry-run")
	require.Equal(t, exitUsage, r.code)
	require.Contains(t, r.stderr, `parameter "id" value "abc" does not match its declaration "[0-9]+"`)

	// policy explain counts the same way.
	r = invoke(t, env, "", "policy", "explain", "catalog.reset", "--redis", db.URL, "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var got struct {
		Actions []explainRow `json:"actions"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	require.Len(t, got.Actions, 1)
	require.Equal(t, int64(1), *got.Actions[0].Matching)
	require.Equal(t, int64(3), *got.Actions[0].Scanned)
	require.Empty(t, got.Actions[0].Others)
	r = invoke(t, env, "", "policy", "explain", "catalog.reset", "--redis", db.URL)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, `1 key (2 other keys match the pattern and are kept)`)

	env[envPolicy] = writePolicy(t, threeFamilies(""))
	r = invoke(t, env, "", "policy", "explain", "catalog.reset", "--redis", db.URL)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, `3 keys (1 also fit family product_details; 1 also fit family product_price)`)
}

// enqueue family --wait reports the family's keys as deleted, not every
// key the pattern matched.
func TestFamilyWaitCountsTheFamily(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	body := threeFamilies(`, params: {id: {match: '[0-9]+'}}`)
	startWaitWorker(t, db, body)
	for _, k := range threeFamilyKeys {
		require.NoError(t, db.Client.Set(t.Context(), k, 1, 0).Err())
	}
	env := map[string]string{envRedisURL: db.URL, envPolicy: writePolicy(t, body)}
	r := invoke(t, env, "", "enqueue", "family", "product", "--yes", "--wait", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var fd familyDeleteResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &fd), r.stdout)
	require.Equal(t, int64(1), fd.Deleted)
	require.Equal(t, int64(3), fd.Scanned)
	require.Equal(t, int64(2), db.Client.Exists(t.Context(), threeFamilyKeys[1:]...).Val(), "keys of other families were deleted")
	require.Zero(t, db.Client.Exists(t.Context(), "product:1").Val())
}
