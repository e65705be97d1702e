package keyspec

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

const auditPolicy = `version: 1
classes:
  standard: {ttl: 10m}
  twice: {second_delete: 500ms}
families:
%s
`

func TestParseAudit(t *testing.T) {
	t.Parallel()

	p, err := Parse("policy.yaml", []byte(strings.ReplaceAll(auditPolicy, "%s", `
  product:
    template: "product:{id}"
    class: standard
    audit:
      query: "SELECT row_to_json(p) FROM products p WHERE id = @id"
      fields: [price, updated_at]
      recheck_after: 2s
  bytes:
    template: "blob:{id}"
    class: standard
    audit: {query: "SELECT data FROM blobs WHERE id = @id", compare: bytes}
  twice:
    template: "t:{id}"
    class: twice
    audit: {query: "SELECT v FROM t WHERE id = @id", recheck_after: 0s}
  twicedefault:
    template: "td:{id}"
    class: twice
    audit: {query: "SELECT v FROM t WHERE id = @id"}
  none:
    template: "n:{id}"
    class: standard`)))
	require.NoError(t, err)
	require.Equal(t, &Audit{
		Query:  "SELECT row_to_json(p) FROM products p WHERE id = @id",
		Params: []string{"id"}, Compare: AuditCompareJSON,
		Fields: []string{"price", "updated_at"}, RecheckAfter: 2 * time.Second,
	}, p.Families["product"].Audit)
	require.Equal(t, AuditCompareBytes, p.Families["bytes"].Audit.Compare)
	require.Equal(t, DefaultRecheckAfter, p.Families["bytes"].Audit.RecheckAfter)
	require.Equal(t, time.Duration(0), p.Families["twice"].Audit.RecheckAfter)
	require.Equal(t, 1500*time.Millisecond, p.Families["twicedefault"].Audit.RecheckAfter)
	require.Nil(t, p.Families["none"].Audit)
	require.Empty(t, p.Warnings())
}

func TestParseAuditErrors(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct{ audit, want string }{
		{`{query: "SELECT v FROM t WHERE id = @id AND o = @org"}`,
			`policy.yaml:10:20: families.f.audit.query: @org is not a parameter of template "f:{id}" (parameters: id)`},
		{`{query: "SELECT v FROM t WHERE id = @id", compare: xml}`,
			`policy.yaml:10:63: families.f.audit.compare: unknown compare mode "xml"; use "json" (the default) or "bytes"`},
		{`{query: "SELECT v FROM t WHERE id = @id", compare: bytes, fields: [a]}`,
			`policy.yaml:10:70: families.f.audit.fields: fields apply only to compare: json`},
		{`{query: "SELECT v FROM t WHERE id = @id", recheck_after: -1s}`,
			`policy.yaml:10:69: families.f.audit.recheck_after: recheck_after -1s is negative`},
		{`{compare: json}`,
			`policy.yaml:10:5: families.f.audit.query: is required`},
		{`{query: "SELECT 1 WHERE @id = 1", fields: []}`,
			`families.f.audit.fields: is empty`},
		{`{query: "SELECT 1 WHERE @id = 1", fields: [a, a]}`,
			`families.f.audit.fields: duplicate field "a"`},
		{`{query: "SELECT 1 WHERE @id = 1", sample: 5}`,
			`families.f.audit.sample: unknown field "sample"`},
		{``, `families.f.audit: is empty`},
	} {
		t.Run(tc.audit, func(t *testing.T) {
			t.Parallel()
			verrs := parseErrors(t, strings.ReplaceAll(auditPolicy, "%s", `
  f:
    template: "f:{id}"
    class: standard
    audit: `+tc.audit))
			require.Len(t, verrs, 1, verrs.Error())
			require.Contains(t, verrs[0].Error(), tc.want)
		})
	}
}

func TestLintWarnsUnusedAuditParameter(t *testing.T) {
	t.Parallel()

	p, err := Parse("policy.yaml", []byte(strings.ReplaceAll(auditPolicy, "%s", `
  f:
    template: "org:{org}:f:{id}"
    class: standard
    audit: {query: "SELECT v FROM t WHERE id = @id -- AND org = @org"}`)))
	require.NoError(t, err)
	w := p.Warnings()
	require.Len(t, w, 1)
	require.Equal(t, `policy.yaml:10:20: families.f.audit.query: does not use template parameter "org" (as @org): keys that differ only in it are compared with the same row`, w[0].Error())
}

func TestAuditQueryParams(t *testing.T) {
	t.Parallel()

	for q, want := range map[string][]string{
		"SELECT row_to_json(p) FROM products p WHERE id = @id":                   {"id"},
		"SELECT v FROM t WHERE a = @a AND b = @b_2 OR a = @a":                    {"a", "b_2"},
		"SELECT '@not' || E'\\'@not' || \"@not\" || $$@not$$ || $x$@not$x$":      nil,
		"SELECT v -- @not\n FROM t /* @not /* @nested */ @not */ WHERE id = @id": {"id"},
		"SELECT @id::text, data @> '{}' , @ -5, a@b, x$y@z":                      {"id", "b", "z"},
		"SELECT 'it''s @not' WHERE x = @x":                                       {"x"},
		"SELECT e'@not', some'@not', name@y":                                     {"y"},
		"SELECT 'unterminated @not":                                              nil,
		"SELECT @a, \xff @b":                                                     {"a"},
	} {
		require.Equal(t, want, AuditQueryParams(q), q)
	}
}

// FuzzAuditQuery checks AuditQueryParams against pgx itself: the names a
// query binds are exactly those pgx.NamedArgs substitutes, so a check that
// passes at load cannot fail (or silently bind NULL) at audit time.
func FuzzAuditQuery(f *testing.F) {
	for _, s := range []string{
		"SELECT row_to_json(p) FROM products p WHERE id = @id",
		"SELECT '@a' || E'\\'@b' || \"@c\" || $$@d$$ || $t$@e$t$ || @f",
		"SELECT 1 -- @a\n/* @b /* @c */ */ @d::int @> @ e$x@g",
		"\xff@a", "@", "@_", "$a$", "/*", "e'", "'@a''@b'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		names := AuditQueryParams(q)
		if !utf8.ValidString(q) {
			// The policy refuses such a query; pgx then even binds names
			// holding the invalid byte.
			return
		}
		na := pgx.NamedArgs{}
		for _, n := range names {
			require.NotEmpty(t, n)
			na[n] = n
		}
		_, args, err := na.RewriteQuery(context.Background(), nil, q, nil)
		require.NoError(t, err)
		got := make([]string, 0, len(args))
		for _, a := range args {
			s, _ := a.(string) // a name pgx found and we did not is nil
			got = append(got, s)
		}
		require.Equal(t, slices.Clip(names), slices.Clip(append([]string(nil), got...)), "query %q", q)
	})
}

func TestParseAuditSchedule(t *testing.T) {
	t.Parallel()

	p, err := Parse("policy.yaml", []byte(`version: 1
classes:
  hourly: {audit_every: 1h, audit_sample: 50}
  standard: {}
families:
  inherits:
    template: "i:{id}"
    class: hourly
    audit: {query: "SELECT v FROM t WHERE id = @id"}
  overrides:
    template: "o:{id}"
    class: hourly
    audit_every: 10m
    audit_sample: 7
    audit: {query: "SELECT v FROM t WHERE id = @id"}
  optout:
    template: "x:{id}"
    class: hourly
    audit_every: 0s
    audit: {query: "SELECT v FROM t WHERE id = @id"}
  unscheduled:
    template: "u:{id}"
    class: standard
    audit: {query: "SELECT v FROM t WHERE id = @id"}
  nosource:
    template: "n:{id}"
    class: hourly
`))
	require.NoError(t, err)
	require.Equal(t, time.Hour, p.Classes["hourly"].AuditEvery)
	require.Equal(t, 50, p.Classes["hourly"].AuditSample)
	got := func(f string) [2]any { a := p.Families[f].Audit; return [2]any{a.Every, a.Sample} }
	require.Equal(t, [2]any{time.Hour, 50}, got("inherits"))
	require.Equal(t, [2]any{10 * time.Minute, 7}, got("overrides"))
	require.Equal(t, [2]any{time.Duration(0), 50}, got("optout"))
	require.Equal(t, [2]any{time.Duration(0), 0}, got("unscheduled"))
	require.Nil(t, p.Families["nosource"].Audit, "a class schedule without an audit section is no audit")
	require.Empty(t, p.Warnings())
}

func TestParseAuditScheduleErrors(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct{ class, family, want string }{
		{`{audit_every: 30s}`, ``, `classes.c.audit_every: audit_every 30s is below 1m0s`},
		{`{audit_sample: 0}`, ``, `classes.c.audit_sample: audit_sample 0 is out of range; use 1 to 100000`},
		{`{}`, `audit_every: 59s`, `families.f.audit_every: audit_every 59s is below 1m0s`},
		{`{}`, `audit_sample: -3`, `families.f.audit_sample: audit_sample -3 is out of range`},
		{`{}`, `audit_sample: 100001`, `families.f.audit_sample: audit_sample 100001 is out of range`},
		{`{}`, `audit_every: 1h`, ``},
	} {
		t.Run(tc.class+tc.family, func(t *testing.T) {
			t.Parallel()
			audit := "\n    audit: {query: \"SELECT v FROM t WHERE id = @id\"}"
			if tc.want == "" {
				// audit_every without an audit section: nothing says how to read the source.
				audit, tc.want = "", `families.f.audit_every: needs an audit section`
			}
			verrs := parseErrors(t, "version: 1\nclasses:\n  c: "+tc.class+`
families:
  f:
    template: "f:{id}"
    class: c`+"\n    "+cmpOr(tc.family, "owner: x")+audit)
			require.Len(t, verrs, 1, verrs.Error())
			require.Contains(t, verrs[0].Error(), tc.want)
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
