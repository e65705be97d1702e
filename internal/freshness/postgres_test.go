package freshness

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
)

// postgresDSN returns a fresh database of the private test server: the
// tests never use the machine's own PostgreSQL.
func postgresDSN(t *testing.T) string {
	t.Helper()
	return pgtest.NewDB(t).DSN
}

func TestPostgresSource(t *testing.T) {
	t.Parallel()
	dsn := postgresDSN(t)
	ctx := context.Background()
	a, err := OpenPostgres(ctx, dsn)
	require.NoError(t, err)
	b, err := OpenPostgres(ctx, dsn)
	require.NoError(t, err)

	v, err := a.Read(ctx, "r1")
	require.NoError(t, err)
	require.Zero(t, v, "a row never written is at version 0")
	for want := int64(1); want <= 3; want++ {
		v, err = a.Write(ctx, "r1")
		require.NoError(t, err)
		require.Equal(t, want, v)
	}
	v, err = a.Read(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, int64(3), v)
	v, err = b.Read(ctx, "r1")
	require.NoError(t, err)
	require.Zero(t, v, "runs must not see each other's rows")

	require.NoError(t, a.Close(ctx))
	require.NoError(t, b.Close(ctx))

	_, err = OpenPostgres(ctx, "postgres://u:s3cret-pw@127.0.0.1:1/x?connect_timeout=1")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret-pw")
}

// The checker runs on a PostgreSQL source as on the in-memory one.
func TestRunWithPostgresSource(t *testing.T) {
	t.Parallel()
	dsn := postgresDSN(t)
	ctx := context.Background()
	pg, err := OpenPostgres(ctx, dsn)
	require.NoError(t, err)
	defer func() { require.NoError(t, pg.Close(ctx)) }()
	db := redistest.NewDB(t)
	rep, err := Run(ctx, Config{Queue: db.Client, Cache: db.Client, Source: pg, Duration: time.Second,
		Writers: 2, Readers: 4, HotKeyReaders: 50, Rows: 8})
	require.NoError(t, err)
	require.NoError(t, rep.Check())
}
