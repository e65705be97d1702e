package freshness

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// postgresDSN returns the test database: INVALIDATOR_TEST_POSTGRES_DSN, or a
// local server with trust auth. Without one the tests skip; with the
// variable set, an unreachable database fails them.
func postgresDSN(t *testing.T) string {
	t.Helper()
	if dsn := os.Getenv("INVALIDATOR_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	dsn := "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&connect_timeout=2"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	pg, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Skipf("no PostgreSQL at 127.0.0.1:5432 (set INVALIDATOR_TEST_POSTGRES_DSN to run this): %v", err)
	}
	_ = pg.Close(ctx)
	return dsn
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
