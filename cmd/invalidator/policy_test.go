package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

const examplePolicy = "../../examples/policy.yaml"

func TestPolicyDoc(t *testing.T) {
	t.Parallel()
	r := invoke(t, nil, "", "policy", "doc", examplePolicy)
	require.Equal(t, exitOK, r.code, r.stderr)
	for _, want := range []string{
		"## Families",
		"| product\\_price | `product:{sku}:price:{currency}` | critical | 30s ±5 % | delete | enforce | pricing-team | price.changed, product.updated | — | — | — |",
		"| catalog | `catalog` | standard | 5min ±20 % | version | enforce | catalog-team | category.changed, product.updated | — | — | — |",
		"## Events",
		"pattern delete product\\_page (page = \\*)",
		"## Freshness classes",
		"| critical | 1min ±10 % | invalidator-critical | 6 | 25 | 10s | 100ms..30s | after 1s |",
	} {
		require.Contains(t, r.stdout, want)
	}
	require.NotRegexp(t, `\d+[hm]0s`, r.stdout, "Go-formatted durations (1h0m0s) in the document")
	// One table row per family, event and class.
	require.Equal(t, 10+8+3, strings.Count(r.stdout, "\n| ")-6, r.stdout) // less each table's header and rule
}

// A family's audit shows its schedule, sample and comparison.
func TestPolicyDocAuditColumns(t *testing.T) {
	t.Parallel()
	body := strings.Replace(auditCLIPolicy, "  critical: {}", "  critical: {audit_every: 1h, audit_sample: 500}", 1)
	body += `  page:
    template: "page:{id}"
    class: standard
    audit:
      query: "SELECT body FROM pages WHERE id = @id"
      compare: bytes
`
	r := invoke(t, nil, "", "policy", "doc", writePolicy(t, body))
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "| audit every | audit sample | audit compare |")
	require.Contains(t, r.stdout, "| product | `product:{id}` | critical | none | delete | enforce | — | — | 1h | 500 | json (price) |")
	require.Contains(t, r.stdout, "| page | `page:{id}` | standard | none | delete | enforce | — | — | on demand | 100 (default) | bytes |")
	require.Contains(t, r.stdout, "| plain | `plain:{id}` | standard | none | delete | enforce | — | — | — | — | — |")
}

func TestPolicyExplain(t *testing.T) {
	t.Parallel()
	env := map[string]string{envPolicy: examplePolicy}
	r := invoke(t, env, "", "policy", "explain", "product.updated", "id=7")
	require.Equal(t, exitOK, r.code, r.stderr)
	for _, want := range []string{
		`delete   product          critical  enforce  "product:7"`,
		`pattern  product_price    critical  enforce  "product:7:price:*"`,
		`pattern  product_page     bulk      enforce  "product_page:7:*"`,
		`bump     catalog          standard  enforce  "{catalog}#ver"`,
	} {
		require.Contains(t, r.stdout, want)
	}
	require.NotContains(t, r.stdout, "IN CACHE", "counted without a cache")

	// Against a live cache it counts, and changes nothing.
	db := redistest.NewDB(t)
	set := []string{"product:7", "product_page:7:1", "product_page:7:2", "product_page:8:1", "product:7:price:EUR"}
	for _, k := range set {
		require.NoError(t, db.Client.Set(t.Context(), k, 1, 0).Err())
	}
	require.NoError(t, db.Client.Set(t.Context(), "{catalog}#ver", 42, 0).Err())
	r = invoke(t, env, "", "policy", "explain", "product.updated", "id=7", "--redis", db.URL, "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var got struct {
		Actions []explainRow `json:"actions"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	counts := map[string]int64{}
	for _, a := range got.Actions {
		switch {
		case a.Matching != nil:
			counts[a.Family] = *a.Matching
		case a.Version != nil:
			counts[a.Family] = *a.Version
		}
	}
	require.Equal(t, map[string]int64{"product": 1, "product_details": 0, "product_price": 1, "product_page": 2, "catalog": 42}, counts)
	require.Equal(t, int64(len(set)), db.Client.Exists(t.Context(), set...).Val(), "explain deleted keys")

	// Mistakes are usage errors that say what is declared.
	r = invoke(t, env, "", "policy", "explain", "product.deleted", "id=7")
	require.Equal(t, exitUsage, r.code)
	require.Contains(t, r.stderr, `unknown event "product.deleted"`)
	require.Contains(t, r.stderr, "declared: category.changed")
	r = invoke(t, env, "", "policy", "explain", "product.updated", "sku=7")
	require.Equal(t, exitUsage, r.code)
	require.Contains(t, r.stderr, `unknown parameter "sku": the event's attributes are id`)

	// A value some families refuse (outside product's declared id) skips
	// their invalidations, as the worker does; the others stay.
	r = invoke(t, env, "", "policy", "explain", "product.updated", "id=abc")
	require.Equal(t, exitOK, r.code, r.stderr)
	for _, want := range []string{
		`pattern  product_page     bulk      enforce  "product_page:abc:*"`,
		`bump     catalog          standard  enforce  "{catalog}#ver"`,
		`refused  product          critical  enforce  - (skipped: render family "product": parameter value outside its declaration: parameter "id" value "abc" does not match its declaration "[0-9]+"`,
		`refused  product_details  standard  enforce  - (skipped: render family "product_details"`,
		`refused  product_price    critical  enforce  - (skipped: pattern family "product_price"`,
	} {
		require.Contains(t, r.stdout, want)
	}
	// One that every family refuses would invalidate nothing: a usage
	// error, here and at enqueue, which queues nothing.
	r = invoke(t, env, "", "policy", "explain", "price.changed", "sku=abc", "currency=EUR")
	require.Equal(t, exitUsage, r.code, r.stdout)
	require.Contains(t, r.stderr, `event "price.changed" invalidates nothing with these attribute values, every family refuses them`)
	env[envRedisURL] = db.URL
	r = invoke(t, env, "", "enqueue", "event", "price.changed", "sku=abc", "currency=EUR")
	require.Equal(t, exitUsage, r.code, r.stdout)
	require.Contains(t, r.stderr, `parameter "sku" value "abc" does not match its declaration "[0-9]+"`)
	r = invoke(t, env, "", "enqueue", "event", "product.updated", "id=abc")
	require.Equal(t, exitOK, r.code, r.stderr)
}

// Every mistake the linter promises to find, in one run, each with its
// file and line.
func TestPolicyLintFindsEveryMistake(t *testing.T) {
	t.Parallel()
	bad := writePolicy(t, `version: 1
classes:
  standard: {ttl: 1m, jitter: 0.7}
families:
  user: {template: "user:{id}", class: standard}
  account: {template: "user:{uid}", class: standard}
  page: {template: "page:{tenant}:{id}", class: missing}
events:
  user.updated:
    attributes: [id]
    invalidates: []
  page.updated:
    attributes: [id]
    invalidates: [page]
`)
	r := invoke(t, nil, "", "policy", "lint", bad)
	require.Equal(t, exitFailure, r.code)
	for _, want := range []string{
		bad + `:3:31: classes.standard.jitter: jitter 0.7 is outside [0, 0.5]`,
		bad + `:6:3: families.account: can render the same key as family "user"`,
		bad + `:7:49: families.page.class: unknown class "missing"`,
		bad + `:11:5: events.user.updated.invalidates: invalidates nothing`,
		bad + `:14:19: events.page.updated.invalidates[0]: family page: template parameter "tenant" is not provided`,
	} {
		require.Contains(t, r.stdout, want)
	}

	warn := writePolicy(t, `version: 1
classes: {standard: {ttl: 1m}}
families:
  user: {template: "user:{id}", class: standard}
  orphan: {template: "orphan:{id}", class: standard}
events:
  user.updated: {attributes: [id], invalidates: [user]}
`)
	r = invoke(t, nil, "", "policy", "lint", warn)
	require.Equal(t, exitOK, r.code, r.stdout)
	require.Contains(t, r.stdout, warn+`:5:3: families.orphan: no event invalidates family "orphan"`)
	require.Contains(t, r.stdout, "(warning)")
	r = invoke(t, nil, "", "policy", "lint", "--strict", warn)
	require.Equal(t, exitFailure, r.code)
}

func TestEnqueueEvent(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	env := map[string]string{envPolicy: examplePolicy, envRedisURL: db.URL}
	r := invoke(t, env, "", "enqueue", "event", "product.updated", "id=7", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, `"task_ids"`)

	r = invoke(t, env, "", "enqueue", "event", "product.exploded", "id=7")
	require.Equal(t, exitUsage, r.code)
	require.Contains(t, r.stderr, `unknown event "product.exploded"`)
	r = invoke(t, env, "", "enqueue", "event", "product.updated")
	require.Equal(t, exitUsage, r.code)
	require.Contains(t, r.stderr, `attribute "id" is required`)
}

func TestDeadRetryForceNeedsFamilyTasks(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	env := map[string]string{envPolicy: examplePolicy, envRedisURL: db.URL}
	r := invoke(t, env, "", "dead", "retry", "--force", "--all")
	require.Equal(t, exitUsage, r.code)
	require.Contains(t, r.stderr, "give their task IDs, not --all")
}

// The tables section is documented: each table's event, attribute ←
// column, what a TRUNCATE invalidates and the replica identity it needs.
func TestPolicyDocTables(t *testing.T) {
	t.Parallel()
	body := `version: 1
classes:
  standard: {ttl: 10m}
families:
  price: {template: "price:{sku}:{currency}", class: standard}
  catalog: {template: "catalog:{sku}", class: standard, strategy: version}
  tenant_doc: {template: "{tenant}.doc.{id}", class: standard}
events:
  price.changed: {attributes: [sku, currency], invalidates: [price, catalog]}
  doc.changed: {attributes: [tenant, id], invalidates: [tenant_doc]}
tables:
  public.prices: {event: price.changed, attributes: {sku: product_id, currency: currency}}
  app.docs: {event: doc.changed, attributes: {tenant: tenant_id, id: id}}
`
	r := invoke(t, nil, "", "policy", "doc", writePolicy(t, body))
	require.Equal(t, exitOK, r.code, r.stderr)
	for _, want := range []string{
		"## Tables (invalidator cdc)",
		"REPLICA IDENTITY",
		"| table | event | attribute ← column | on TRUNCATE | replica identity must cover |",
		"| app.docs | doc.changed | id ← id, tenant ← tenant\\_id | tenant\\_doc: not invalidated (its template cannot be deleted whole) | id, tenant\\_id |",
		"| public.prices | price.changed | currency ← currency, sku ← product\\_id | every key of price<br>every version key of catalog | currency, product\\_id |",
	} {
		require.Contains(t, r.stdout, want)
	}
	// Tables come between events and classes.
	require.Less(t, strings.Index(r.stdout, "## Events"), strings.Index(r.stdout, "## Tables"))
	require.Less(t, strings.Index(r.stdout, "## Tables"), strings.Index(r.stdout, "## Freshness classes"))

	// No tables section, no tables heading.
	r = invoke(t, nil, "", "policy", "doc", examplePolicy)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.NotContains(t, r.stdout, "## Tables")
}
