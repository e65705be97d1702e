package pgtest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/pgtest"
)

func TestOwnServerRestartsWithItsSettings(t *testing.T) {
	t.Parallel()
	srv := pgtest.NewServer(t, "wal_level=replica")
	db := srv.NewDB(t)
	ctx := t.Context()
	var level string
	require.NoError(t, db.Pool.QueryRow(ctx, "SHOW wal_level").Scan(&level))
	require.Equal(t, "replica", level)
	_, err := db.Pool.Exec(ctx, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
	require.NoError(t, err)

	srv.Restart(t)
	db.Pool.Reset() // its connections died with the old server
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n))
	require.Equal(t, 1, n)
	require.NoError(t, db.Pool.QueryRow(ctx, "SHOW wal_level").Scan(&level))
	require.Equal(t, "replica", level)
}
