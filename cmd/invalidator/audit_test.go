package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
)

const auditCLIPolicy = `version: 1
default_class: standard
classes:
  standard: {}
  critical: {}
families:
  product:
    template: "product:{id}"
    params: {id: {match: '[0-9]+'}}
    class: critical
    audit:
      query: "SELECT row_to_json(p) FROM products p WHERE id = @id"
      fields: [price]
      recheck_after: 10ms
  plain:
    template: "plain:{id}"
    class: standard
`

// auditEnv is a products table of m rows in a private PostgreSQL, their
// cache entries in a private Redis, n of them stale, and the CLI's
// environment for both. It returns the stale keys.
func auditEnv(t *testing.T, m, n int) (map[string]string, *redistest.DB, []string) {
	t.Helper()
	ctx := t.Context()
	pg := pgtest.NewDB(t)
	_, err := pg.Pool.Exec(ctx, fmt.Sprintf(`CREATE TABLE products (id bigint PRIMARY KEY, price int);
		INSERT INTO products SELECT i, 100 + i FROM generate_series(1, %d) i`, m))
	require.NoError(t, err)
	rdb := redistest.NewDB(t)
	var stale []string
	for i := 1; i <= m; i++ {
		price := 100 + i
		key := fmt.Sprintf("product:%d", i)
		if i%(m/n) == 0 && len(stale) < n {
			price = 1 // the row changed; the write path forgot the cache
			stale = append(stale, key)
		}
		v := fmt.Sprintf(`{"price": %d, "id": %d}`, price, i)
		require.NoError(t, rdb.Client.Set(ctx, key, cacheaside.EncodeValue([]byte(v)), 0).Err())
	}
	require.Len(t, stale, n)
	slices.Sort(stale)
	env := map[string]string{envRedisURL: rdb.URL, envPolicy: writePolicy(t, auditCLIPolicy), envAuditDSN: pg.DSN}
	return env, rdb, stale
}

func auditJSON(t *testing.T, r result) auditResult {
	t.Helper()
	var out auditResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	return out
}

// Planted stale entries are found exactly (exit 1); --heal, with a worker
// serving the family's class queue only, removes exactly them; the audit
// then finds the cache consistent (exit 0).
func TestAuditFindsAndHealsPlantedStaleEntries(t *testing.T) {
	t.Parallel()
	const m, n = 200, 6
	env, rdb, stale := auditEnv(t, m, n)

	r := invoke(t, env, "", "audit", "--sample", "1000", "--json")
	require.Equal(t, exitFailure, r.code, r.stderr)
	require.Contains(t, r.stderr, "audit: 6 inconsistent keys (product 6)")
	out := auditJSON(t, r)
	require.Len(t, out.Families, 1)
	rep := out.Families[0]
	require.Equal(t, "product", rep.Family)
	require.Equal(t, m, rep.Sampled)
	require.Equal(t, n, rep.Inconsistent)
	require.Equal(t, m-n, rep.Consistent)
	require.Nil(t, out.Healed)
	for _, ex := range rep.Examples {
		require.Contains(t, stale, ex.Key)
		require.Nil(t, ex.Cached)
	}
	var raw map[string][]map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &raw))
	for _, k := range []string{"family", "mode", "sampled", "consistent", "inconsistent", "in_flight", "unverifiable", "nines", "examples"} {
		require.Contains(t, raw["families"][0], k)
	}

	// The worker serves the critical class only: a heal on the default
	// class's queue would never run.
	startServingWorker(t, rdb, "  critical: {}\n")
	r = invoke(t, env, "", "audit", "--sample", "1000", "--heal")
	require.Equal(t, exitFailure, r.code, r.stderr)
	require.Contains(t, r.stdout, "healed: enqueued the invalidation of 6 stale keys")
	require.Regexp(t, `product\s+enforce\s+200\s+194\s+6\s+0\s+0\s+1\.52\s+product:\d+ \(inconsistent\)`, r.stdout)
	require.Eventually(t, func() bool { return rdb.Client.Exists(t.Context(), stale...).Val() == 0 },
		30*time.Second, 5*time.Millisecond, "the healed keys were never deleted")
	left, err := rdb.Client.Keys(t.Context(), "product:*").Result()
	require.NoError(t, err)
	require.Len(t, left, m-n, "only the stale keys were deleted")

	r = invoke(t, env, "", "audit", "--sample", "1000", "--json", "--family", "product")
	require.Equal(t, exitOK, r.code, r.stderr)
	rep = auditJSON(t, r).Families[0]
	require.Equal(t, m-n, rep.Consistent)
	require.Zero(t, rep.Inconsistent)
}

func TestAuditShowValuesAndUnverifiable(t *testing.T) {
	t.Parallel()
	env, _, stale := auditEnv(t, 10, 1)
	r := invoke(t, env, "", "audit", "--show-values")
	require.Equal(t, exitFailure, r.code, r.stderr)
	require.Contains(t, r.stdout, "product "+stale[0]+":\n  cached: {\"price\": 1")

	pg := pgtest.NewDB(t) // no products table: every key unverifiable
	env[envAuditDSN] = pg.DSN
	r = invoke(t, env, "", "audit", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, 10, auditJSON(t, r).Families[0].Unverifiable)
	require.Contains(t, r.stderr, `family product: 10 keys unverifiable: audit query: ERROR: relation "products" does not exist`)
}

func TestAuditUsageAndConnectionErrors(t *testing.T) {
	t.Parallel()
	const secret = "s3cretPassw0rd"
	env, _, _ := auditEnv(t, 10, 1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	pg := pgtest.NewDB(t)

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"no audit section", nil, []string{"--family", "plain"}, exitUsage, `family "plain" declares no audit section`},
		{"unknown family", nil, []string{"--family", "nope"}, exitUsage, `unknown family "nope"`},
		{"bad sample", nil, []string{"--sample", "0"}, exitUsage, "--sample 0 must be at least 1"},
		{"bad scan budget", nil, []string{"--scan-budget", "-1"}, exitUsage, "--scan-budget -1 must not be negative"},
		{"no dsn", map[string]string{envAuditDSN: ""}, nil, exitUsage, envAuditDSN},
		{"bad dsn", map[string]string{envAuditDSN: "postgres://app:" + secret + "@[::1/shop"}, nil, exitUsage, "PostgreSQL DSN does not parse"},
		{"no database", map[string]string{envAuditDSN: strings.Replace(pg.DSN, "/"+pg.Name, "/"+pg.Name+"_missing", 1)}, nil, exitUsage, "does not exist"},
		{"unreachable", nil, []string{"--source-dsn", "postgres://app:" + secret + "@" + closed + "/shop"}, exitUnreachable, "PostgreSQL at 127.0.0.1"},
		{"no policy section", map[string]string{envPolicy: writePolicy(t, "version: 1\nclasses: {standard: {}}\n")}, nil, exitUsage, "no family of the policy declares an audit section"},
	} {
		e := map[string]string{}
		for k, v := range env {
			e[k] = v
		}
		for k, v := range tc.env {
			e[k] = v
		}
		r := invoke(t, e, "", append([]string{"audit"}, tc.args...)...)
		require.Equal(t, tc.code, r.code, "%s: %s", tc.name, r.stderr)
		require.Contains(t, r.stderr, tc.want, tc.name)
		require.NotContains(t, r.stdout+r.stderr, secret, tc.name)
	}
	r := invoke(t, map[string]string{envAuditDSN: "postgres://app:" + secret + "@db/shop"}, "", "audit", "--help")
	require.Equal(t, exitOK, r.code)
	require.NotContains(t, r.stdout+r.stderr, secret)
	require.Contains(t, r.stdout, envAuditDSN)
}

// A worker with --audit-source-dsn audits a family with audit_every at
// once (no run yet this period) and logs each stale key; a second worker of
// the fleet does not audit it again in the same period, and a worker
// without a DSN says scheduled audits are off.
func TestWorkerRunsScheduledAudits(t *testing.T) {
	t.Parallel()
	bin := testBinary(t)
	env, _, stale := auditEnv(t, 20, 2)
	env[envPolicy] = writePolicy(t, strings.Replace(auditCLIPolicy, "  critical: {}", "  critical: {audit_every: 1h}", 1))
	list := os.Environ()
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	first := startProc(t, bin, list, "worker")
	waitLog(t, first, "scheduled audit found stale cache entries")
	for _, key := range stale {
		waitLog(t, first, "key="+key)
	}
	require.Contains(t, first.logs.String(), "inconsistent=2")

	second := startProc(t, bin, list, "worker", "--audit-source-dsn", env[envAuditDSN])
	waitLog(t, second, "scheduled audits on")
	first.signal(t, syscall.SIGTERM)
	require.NoError(t, first.wait(t, 30*time.Second))
	second.signal(t, syscall.SIGTERM)
	require.NoError(t, second.wait(t, 30*time.Second))
	require.NotContains(t, second.logs.String(), "scheduled audit done", "the period's audit ran on the first worker already")
	require.NotContains(t, second.logs.String(), "scheduled audit found")

	noDSN := slices.DeleteFunc(slices.Clone(list), func(s string) bool { return strings.HasPrefix(s, envAuditDSN+"=") })
	off := startProc(t, bin, noDSN, "worker")
	waitLog(t, off, "scheduled audits off")
}

// Without --sample, each family compares its policy's audit_sample keys.
func TestAuditSampleDefaultsToThePolicys(t *testing.T) {
	t.Parallel()
	env, _, _ := auditEnv(t, 50, 1)
	env[envPolicy] = writePolicy(t, strings.Replace(auditCLIPolicy, "    class: critical\n", "    class: critical\n    audit_sample: 7\n", 1))
	r := invoke(t, env, "", "audit", "--json")
	require.Contains(t, []int{exitOK, exitFailure}, r.code, r.stderr)
	rep := auditJSON(t, r).Families[0]
	require.Equal(t, 7, rep.Sampled+rep.Skipped)

	r = invoke(t, env, "", "audit", "--json", "--sample", "20")
	require.Contains(t, []int{exitOK, exitFailure}, r.code, r.stderr)
	require.Equal(t, 20, auditJSON(t, r).Families[0].Sampled, "--sample wins over the policy")
}
