package audit_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/audit"
	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
)

// pgFamily loads a policy family with this audit section.
func pgFamily(t *testing.T, auditSection string) *keyspec.Family {
	t.Helper()
	p, err := keyspec.Parse("policy.yaml", []byte(`version: 1
classes: {standard: {}}
families:
  product:
    template: "product:{id}"
    params: {id: {match: '[0-9]+'}}
    class: standard
    audit: `+auditSection))
	require.NoError(t, err)
	return p.Families["product"]
}

func TestPostgresSource_FindsTheStaleAndMissingRows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	rdb := redistest.Client(t)
	_, err := db.Pool.Exec(ctx, `CREATE TABLE products (id bigint PRIMARY KEY, price int, name text, updated_at timestamptz DEFAULT now());
		INSERT INTO products (id, price, name) SELECT i, 100 + i, 'p' || i FROM generate_series(1, 40) i`)
	require.NoError(t, err)
	fam := pgFamily(t, `{query: "SELECT row_to_json(p) FROM products p WHERE id = @id", fields: [price, name], recheck_after: 10ms}`)

	// The cache as the application's loader fills it, with its own key
	// order and spacing: JSON comparison must not care.
	for i := 1; i <= 40; i++ {
		v := fmt.Sprintf(`{"name": "p%d", "price": %d, "id": %d}`, i, 100+i, i)
		switch i {
		case 7, 21: // stale: the row changed, no invalidation
			v = fmt.Sprintf(`{"name": "p%d", "price": 1, "id": %d}`, i, i)
		}
		key, err := fam.Key(map[string]string{"id": fmt.Sprint(i)})
		require.NoError(t, err)
		require.NoError(t, rdb.Set(ctx, key, cacheaside.EncodeValue([]byte(v)), 0).Err())
	}
	// A cached product whose row was deleted is stale too.
	require.NoError(t, rdb.Set(ctx, "product:99", cacheaside.EncodeValue([]byte(`{"id": 99}`)), 0).Err())

	c, err := audit.PolicyCheck(fam, db.Pool)
	require.NoError(t, err)
	a := newAuditor(t, rdb, audit.Config{Sample: 1000})
	rep, err := a.Audit(ctx, c)
	require.NoError(t, err)
	require.Equal(t, 41, rep.Sampled)
	require.Equal(t, 38, rep.Consistent)
	require.Equal(t, []string{"product:21", "product:7", "product:99"}, rep.Stale)
	require.Zero(t, rep.Unverifiable)
}

func TestPostgresSource_Values(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	_, err := db.Pool.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY, j jsonb, b bytea, s text, n int);
		INSERT INTO t VALUES (1, '{"a": 1}', '\x00ff', 'hello', 5), (2, NULL, NULL, NULL, NULL), (3, '{}', '', '', 3)`)
	require.NoError(t, err)
	for _, tc := range []struct {
		query, id, want, err string
		found                bool
	}{
		{query: `SELECT j FROM t WHERE id = @id`, id: "1", want: `{"a": 1}`, found: true},
		{query: `SELECT b FROM t WHERE id = @id`, id: "1", want: "\x00\xff", found: true},
		{query: `SELECT s FROM t WHERE id = @id -- '@x'`, id: "1", want: "hello", found: true},
		{query: `SELECT j::json FROM t WHERE id = @id`, id: "3", want: `{}`, found: true},
		{query: `SELECT s FROM t WHERE id = @id`, id: "4"},
		{query: `SELECT s FROM t WHERE id = @id`, id: "2", err: "returned NULL"},
		{query: `SELECT n FROM t WHERE id = @id`, id: "1", err: `column "n" has type oid 23`},
		{query: `SELECT s, n FROM t WHERE id = @id`, id: "1", err: "returns 2 columns"},
		{query: `SELECT s FROM t WHERE id >= @id`, id: "1", err: "more than one row"},
		{query: `SELECT s FROM nope WHERE id = @id`, id: "1", err: `relation "nope" does not exist`},
		{query: `SELECT s FROM t WHERE id = @id`, id: "x", err: "invalid input syntax"},
	} {
		f := pgFamily(t, fmt.Sprintf("{query: %q}", tc.query))
		v, found, err := audit.NewPostgresSource(db.Pool, f.Audit).Fetch(ctx, map[string]string{"id": tc.id})
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.query)
			continue
		}
		require.NoError(t, err, tc.query)
		require.Equal(t, tc.found, found, tc.query)
		require.Equal(t, tc.want, string(v), tc.query)
	}
}

func TestPolicyCheck_NeedsAnAuditSection(t *testing.T) {
	t.Parallel()
	f, err := keyspec.NewFamily("plain", "plain:{id}", keyspec.FamilyOptions{})
	require.NoError(t, err)
	_, err = audit.PolicyCheck(f, nil)
	require.ErrorContains(t, err, `family "plain" has no audit section`)
}
