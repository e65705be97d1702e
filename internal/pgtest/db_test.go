package pgtest_test

import (
	"context"
	"database/sql"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/pgtest"
)

func TestDatabasesAreIsolated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := pgtest.NewDB(t), pgtest.NewDB(t)
	require.NotEqual(t, a.Name, b.Name)
	_, err := a.Pool.Exec(ctx, `CREATE TABLE t (id int); INSERT INTO t VALUES (1)`)
	require.NoError(t, err)
	var n int
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 't'`).Scan(&n))
	require.Zero(t, n, "a table of one test's database must not be visible in another's")
}

// The server is private and set up as the package documents.
func TestServerSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	for name, want := range map[string]string{
		"wal_level":          "logical",
		"fsync":              "off",
		"max_connections":    "200",
		"listen_addresses":   "127.0.0.1",
		"server_encoding":    "UTF8",
		"synchronous_commit": "on",
	} {
		var got string
		require.NoError(t, db.Pool.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got))
		require.Equal(t, want, got, name)
	}
	require.NotContains(t, db.DSN, ":5432/", "never the machine's own server")
}

// The DSN works for database/sql through pgx's stdlib driver.
func TestDSNForDatabaseSQL(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	sdb, err := sql.Open("pgx", db.DSN)
	require.NoError(t, err)
	defer sdb.Close()
	var name string
	require.NoError(t, sdb.QueryRowContext(context.Background(), "SELECT current_database()").Scan(&name))
	require.Equal(t, db.Name, name)
}

// A connection left open by a test does not keep its database from being
// dropped at cleanup.
func TestLeakedConnectionIsClosedAtCleanup(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("leaks", func(t *testing.T) {
		db := pgtest.NewDB(t)
		name = db.Name
		sdb, err := sql.Open("pgx", db.DSN)
		require.NoError(t, err)
		require.NoError(t, sdb.Ping()) // never closed
	})
	probe := pgtest.NewDB(t)
	var n int
	require.NoError(t, probe.Pool.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n))
	require.Zero(t, n)
}
