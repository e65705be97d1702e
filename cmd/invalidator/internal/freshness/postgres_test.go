package freshness

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"

	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/outbox"
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

// A PostgreSQL source has an outbox of its own: a write and its outbox row
// commit together or not at all, and Close drops the outbox.
func TestPostgresSourceOutbox(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()
	p, err := OpenPostgres(ctx, db.DSN)
	require.NoError(t, err)
	exists := func(table string) bool {
		var found bool
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&found))
		return found
	}
	outboxRows := func() int {
		var n int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{p.outbox.Table}.Sanitize()).Scan(&n))
		return n
	}
	require.True(t, exists(p.outbox.Table), "OpenPostgres migrates the run's outbox")
	require.Contains(t, p.outbox.Table, p.run)

	policy, err := keyspec.Parse("p.yaml", []byte("version: 1\nclasses: {standard: {ttl: 1m}}\n"))
	require.NoError(t, err)
	w, err := outbox.NewWriter(enqueue.NewBuilder(enqueue.Config{Policy: policy}), p.outbox)
	require.NoError(t, err)
	_, err = p.writeTx(ctx, "r1", func(tx *outbox.PgxTx) error {
		require.NoError(t, w.DeleteKeys(ctx, tx, "k1"))
		return errors.New("refused")
	})
	require.ErrorContains(t, err, "refused")
	v, err := p.Read(ctx, "r1")
	require.NoError(t, err)
	require.Zero(t, v, "a failed write leaves no version")
	require.Zero(t, outboxRows(), "and no outbox row")

	v, err = p.writeTx(ctx, "r1", func(tx *outbox.PgxTx) error { return w.DeleteKeys(ctx, tx, "k1") })
	require.NoError(t, err)
	require.EqualValues(t, 1, v)
	require.Equal(t, 1, outboxRows(), "the write committed with its outbox row")

	require.NoError(t, p.Close(ctx))
	require.False(t, exists(p.outbox.Table), "Close drops the run's outbox")
	require.False(t, exists(p.outbox.Table+"_migrations"))
}

// The checker runs on a PostgreSQL source as on the in-memory one, with its
// invalidations through the outbox: the forced races wait for invalidations
// the relay delivered, so a control stale in every race shows they arrived.
func TestRunWithPostgresSource(t *testing.T) {
	t.Parallel()
	dsn := postgresDSN(t)
	ctx := context.Background()
	pg, err := OpenPostgres(ctx, dsn)
	require.NoError(t, err)
	defer func() { require.NoError(t, pg.Close(ctx)) }()
	db := redistest.NewDB(t)
	rep, err := Run(ctx, Config{Queue: db.Client, Cache: db.Client, Source: pg, Duration: time.Second,
		Writers: 2, Readers: 4, HotKeyReaders: 50, Rows: 8, ForcedRaces: 2, LagBound: time.Second})
	require.NoError(t, err)
	require.NoError(t, rep.Check())
	require.Equal(t, InvalidationsOutbox, rep.Invalidations)
	require.Zero(t, rep.CacheAside.StaleReads)
	require.EqualValues(t, 2, rep.Control.ForcedRaceStaleReads, "every forced race's invalidation came through the relay")
	require.Positive(t, rep.Writes)
	require.Zero(t, rep.WriteErrors, rep.FirstError)
	require.Positive(t, rep.InvalidationLagP50Ms, "the writes' invalidations were matched to their application")
}
