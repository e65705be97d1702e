package main

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
)

// migrate applies the schema once, then reports it up to date; status sees
// the version, and a --json run says what it applied.
func TestOutboxMigrateIdempotent(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	env := map[string]string{envOutboxDSN: db.DSN}

	r := invoke(t, env, "", "outbox", "status", "--json")
	require.Equal(t, exitFailure, r.code, r.stderr)
	require.Contains(t, r.stderr, "run invalidator outbox migrate")

	r = invoke(t, env, "", "outbox", "migrate", "--schema", "ops", "--table", "inv_box", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var got struct {
		Applied []int `json:"applied"`
		Version int   `json:"version"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	require.Equal(t, []int{1, 2}, got.Applied)
	require.Equal(t, 2, got.Version)

	for range 2 {
		r = invoke(t, env, "", "outbox", "migrate", "--schema", "ops", "--table", "inv_box")
		require.Equal(t, exitOK, r.code, r.stderr)
		require.Equal(t, "outbox ops.inv_box: up to date (version 2)\n", r.stdout)
	}
	r = invoke(t, env, "", "outbox", "status", "--schema", "ops", "--table", "inv_box", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var st outboxStatus
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	require.Equal(t, outboxStatus{Table: "ops.inv_box", Version: 2, LatestVersion: 2}, st)
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM ops.inv_box_migrations`).Scan(&n))
	require.Equal(t, 2, n)

	// Rows the relay refused show, in text and JSON.
	_, err := db.Pool.Exec(context.Background(), `INSERT INTO ops.inv_box_quarantine
		(id, created_at, kind, payload, queue, max_retry, timeout_ms, reason)
		VALUES (7, now(), 'x', '', ' ', 0, 0, 'blank queue')`)
	require.NoError(t, err)
	r = invoke(t, env, "", "outbox", "status", "--schema", "ops", "--table", "inv_box", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	require.Equal(t, int64(1), st.Quarantined)
	r = invoke(t, env, "", "outbox", "status", "--schema", "ops", "--table", "inv_box")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "quarantined:    1 rows\n")
}

// The SQL of --print, applied as a DBA would (one Exec of the whole script),
// yields the same schema as migrate; migrate then finds it up to date.
func TestOutboxMigratePrintAppliesSameSchema(t *testing.T) {
	t.Parallel()
	viaCLI, viaScript := pgtest.NewDB(t), pgtest.NewDB(t)
	args := []string{"outbox", "migrate", "--schema", "Ops", "--table", "My Box"}

	r := invoke(t, map[string]string{envOutboxDSN: viaCLI.DSN}, "", args...)
	require.Equal(t, exitOK, r.code, r.stderr)

	r = invoke(t, nil, "", append(args, "--print")...) // no DSN needed
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, `CREATE TABLE "Ops"."My Box"`)
	_, err := viaScript.Pool.Exec(context.Background(), r.stdout)
	require.NoError(t, err)
	require.Equal(t, schemaOf(t, viaCLI.Pool), schemaOf(t, viaScript.Pool))

	r = invoke(t, map[string]string{envOutboxDSN: viaScript.DSN}, "", args...)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "up to date (version 2)")

	r = invoke(t, nil, "", append(args, "--print", "--from", "1")...)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.NotContains(t, r.stdout, "CREATE TABLE \"Ops\".\"My Box\" (")
	r = invoke(t, nil, "", append(args, "--print", "--from", "7")...)
	require.Equal(t, exitUsage, r.code, r.stderr)
	r = invoke(t, nil, "", append(args, "--from", "1")...)
	require.Equal(t, exitUsage, r.code, r.stderr)
}

// schemaOf describes the user tables, columns, constraints and indexes of
// a database, for comparing two databases.
func schemaOf(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT format('column %s.%s.%s %s null=%s default=%s identity=%s', table_schema, table_name, column_name,
		              data_type, is_nullable, coalesce(column_default, ''), coalesce(identity_generation, ''))
		  FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
		UNION ALL
		SELECT format('constraint %s %s', conrelid::regclass, pg_get_constraintdef(oid))
		  FROM pg_constraint WHERE connamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema')
		UNION ALL
		SELECT format('index %s.%s', schemaname, indexdef)
		  FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
		ORDER BY 1`)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, out)
	return out
}

// A DSN's password never shows: not when the DSN does not parse (exit 2),
// not when the server is unreachable (exit 3), not in --help.
func TestOutboxDSNSecret(t *testing.T) {
	t.Parallel()
	const secret = "s3cretPassw0rd"
	l, err := net.Listen("tcp", "127.0.0.1:0") // a port nothing answers on once closed
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())

	for _, tc := range []struct {
		dsn  string
		code int
	}{
		{"postgres://app:" + secret + "@" + closed + "/shop", exitUnreachable},
		{"host=127.0.0.1 port=" + strings.Split(closed, ":")[1] + " user=app password=" + secret + " dbname=shop", exitUnreachable},
		{"postgres://app:" + secret + "@127.0.0.1:notaport/shop", exitUsage},
		{"postgres://app:" + secret + "@[::1/shop", exitUsage},
		{"host=127.0.0.1 password='" + secret, exitUsage},
	} {
		for _, args := range [][]string{
			{"outbox", "migrate", "--dsn", tc.dsn},
			{"outbox", "status", "--dsn", tc.dsn},
		} {
			r := invoke(t, nil, "", args...)
			require.Equal(t, tc.code, r.code, "%v: %s", args, r.stderr)
			require.NotContains(t, r.stderr+r.stdout, secret, args)
			require.Contains(t, r.stderr, "PostgreSQL", args)
		}
		r := invoke(t, map[string]string{envOutboxDSN: tc.dsn}, "", "outbox", "migrate")
		require.Equal(t, tc.code, r.code, r.stderr)
		require.NotContains(t, r.stderr+r.stdout, secret)
	}
	for _, args := range [][]string{{"outbox", "migrate", "--help"}, {"outbox", "status", "--help"}} {
		r := invoke(t, map[string]string{envOutboxDSN: "postgres://app:" + secret + "@db/shop"}, "", args...)
		require.Equal(t, exitOK, r.code)
		require.NotContains(t, r.stdout+r.stderr, secret)
		require.Contains(t, r.stdout, envOutboxDSN)
	}
	r := invoke(t, nil, "", "outbox", "migrate")
	require.Equal(t, exitUsage, r.code)
	require.Contains(t, r.stderr, envOutboxDSN)
}

// A PostgreSQL that answers but refuses the DSN (no such role: 28000; no
// such database: 3D000; a wrong password is 28P01) is a usage error, exit
// 2, as a Redis that refuses its URL's password is: the settings are wrong,
// the server is there. Every command that takes a DSN agrees.
func TestPostgresRefusingTheDSNExitsUsage(t *testing.T) {
	t.Parallel()
	pg := pgtest.NewDB(t)
	u, err := url.Parse(pg.DSN)
	require.NoError(t, err)
	noRole, noDB := *u, *u
	noRole.User = url.User("no_such_role")
	noDB.Path = "/no_such_database"
	redisURL := redistest.NewDB(t).URL
	for _, dsn := range []string{noRole.String(), noDB.String()} {
		for _, args := range [][]string{
			{"outbox", "migrate", "--dsn", dsn},
			{"outbox", "status", "--dsn", dsn},
			{"relay", "--dsn", dsn, "--redis", redisURL},
			{"bench", "outbox", "--dsn", dsn, "--lag-duration", "100ms"},
			{"dev", "--workload", "--source-dsn", dsn, "--duration", "1s", "--redis", redisURL},
		} {
			r := invoke(t, nil, "", args...)
			require.Equal(t, exitUsage, r.code, "%v: %s", args, r.stderr)
			require.Contains(t, r.stderr, "SQLSTATE", args)
		}
	}
}
