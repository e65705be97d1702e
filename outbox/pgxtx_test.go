package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/outbox"
)

// exchanges counts what a connection sends: statements sent alone (Exec,
// Query) and batches.
type exchanges struct{ queries, batches atomic.Int64 }

func (c *exchanges) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.queries.Add(1)
	return ctx
}
func (c *exchanges) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *exchanges) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.batches.Add(1)
	return ctx
}
func (c *exchanges) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *exchanges) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// snapshot returns the counts so far.
func (c *exchanges) snapshot() (queries, batches int64) { return c.queries.Load(), c.batches.Load() }

// execModes are the exec modes a PgxTx must commit in: pgx's default (the
// statement cache, so "commit" in the batch gets prepared), and those of
// pgbouncer users.
var execModes = map[string]pgx.QueryExecMode{
	"cache_statement": pgx.QueryExecModeCacheStatement,
	"cache_describe":  pgx.QueryExecModeCacheDescribe,
	"describe_exec":   pgx.QueryExecModeDescribeExec,
	"exec":            pgx.QueryExecModeExec,
	"simple_protocol": pgx.QueryExecModeSimpleProtocol,
}

// pool returns a pool of the bundle's database in exec mode m whose
// connections count their exchanges.
func (b *bundle) pool(t *testing.T, m pgx.QueryExecMode) (*pgxpool.Pool, *exchanges) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(b.db.DSN)
	require.NoError(t, err)
	ex := &exchanges{}
	cfg.ConnConfig.DefaultQueryExecMode = m
	cfg.ConnConfig.Tracer = ex
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool, ex
}

// begin begins a PgxTx on pool that a failing test rolls back, so that
// the pool's Close does not wait for its connection forever.
func begin(t *testing.T, pool *pgxpool.Pool) *outbox.PgxTx {
	t.Helper()
	tx, err := outbox.BeginPgx(context.Background(), pool, pgx.TxOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// item returns v of the items row id.
func (b *bundle) item(t *testing.T, id int) int {
	t.Helper()
	var v int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT v FROM items WHERE id = $1`, id).Scan(&v))
	return v
}

// The queued writes and the COMMIT go in one batch, and no statement goes
// alone, in every exec mode; the rows commit with the transaction's UPDATE,
// the connection goes back to the pool in good state, and the relay
// delivers the rows.
func TestPgxTxWritesRideTheCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	_, err := b.db.Pool.Exec(ctx, `INSERT INTO items VALUES (1, 0)`)
	require.NoError(t, err)
	want := map[string]int{}
	commits := 0
	for name, mode := range execModes {
		pool, ex := b.pool(t, mode)
		for round := range 2 { // the second with the statements cached
			tx := begin(t, pool)
			_, err := tx.Exec(ctx, `UPDATE items SET v = v + 1 WHERE id = 1`)
			require.NoError(t, err, name)
			queries, batches := ex.snapshot()
			key := fmt.Sprintf("k:%s:%d", name, round)
			require.NoError(t, b.w.DeleteKeys(ctx, tx, key, key+":\xff"), name)
			require.NoError(t, b.w.Publish(ctx, tx, "product.updated", map[string]string{"id": key}), name)
			q, bt := ex.snapshot()
			require.Equal(t, [2]int64{queries, batches}, [2]int64{q, bt}, "%s: a write is queued, not sent", name)
			require.Equal(t, 2*commits, b.rows(t), "%s: nothing written before the commit", name)

			require.NoError(t, tx.Commit(ctx), name)
			commits++
			q, bt = ex.snapshot()
			require.Equal(t, queries, q, "%s: no statement of its own, COMMIT included", name)
			require.Equal(t, batches+1, bt, "%s: the writes and the COMMIT in one batch", name)
			require.Zero(t, pool.Stat().AcquiredConns(), "%s: the connection is back in the pool", name)
			// pgxpool destroys a connection released in a transaction.
			require.EqualValues(t, 1, pool.Stat().TotalConns(), "%s: the connection was kept: idle, in good state", name)
			require.Equal(t, 2*commits, b.rows(t), name)
			require.Equal(t, commits, b.item(t, 1), "%s: the UPDATE committed", name)
			want[key]++
			want[key+":\xff"]++

			require.ErrorIs(t, tx.Commit(ctx), pgx.ErrTxClosed, name)
			require.ErrorIs(t, tx.Rollback(ctx), pgx.ErrTxClosed, "%s: a deferred Rollback is a no-op", name)
			_, err = tx.Exec(ctx, `SELECT 1`)
			require.ErrorIs(t, err, pgx.ErrTxClosed, name)
			require.ErrorIs(t, b.w.DeleteKeys(ctx, tx, "late"), pgx.ErrTxClosed, name)
		}
	}

	n, err := b.relay(t, nil).Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 2*commits, n)
	require.Equal(t, want, b.queuedKeys(t, "invalidator-standard"))
	require.Len(t, b.queued(t, "prices"), commits, "one event per transaction")
}

// A transaction on a caller's connection commits the same way and leaves
// the connection open and out of the transaction.
func TestBeginPgxConn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	conn, err := pgx.Connect(ctx, b.db.DSN)
	require.NoError(t, err)
	defer conn.Close(ctx)
	for _, commit := range []bool{true, false} {
		tx, err := outbox.BeginPgxConn(ctx, conn, pgx.TxOptions{})
		require.NoError(t, err)
		require.Same(t, conn, tx.Conn())
		require.NoError(t, b.w.DeleteKeys(ctx, tx, fmt.Sprint("k:", commit)))
		if commit {
			require.NoError(t, tx.Commit(ctx))
		} else {
			require.NoError(t, tx.Rollback(ctx))
		}
		require.False(t, conn.IsClosed())
		require.Equal(t, byte('I'), conn.PgConn().TxStatus())
	}
	require.Equal(t, 1, b.rows(t), "the rolled-back write left nothing")
	_, err = outbox.BeginPgxConn(ctx, nil, pgx.TxOptions{})
	require.Error(t, err)
	_, err = outbox.BeginPgx(ctx, nil, pgx.TxOptions{})
	require.Error(t, err)
	require.Error(t, b.w.DeleteKeys(ctx, &outbox.PgxTx{}, "k"), "a PgxTx not begun is refused")
}

// Rollback drops the queued writes: no row, and the connection back.
func TestPgxTxRollbackLeavesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	tx := begin(t, b.db.Pool)
	require.NoError(t, b.w.DeleteKeys(ctx, tx, "k1"))
	require.NoError(t, tx.Rollback(ctx))
	require.ErrorIs(t, tx.Rollback(ctx), pgx.ErrTxClosed)
	require.ErrorIs(t, tx.Commit(ctx), pgx.ErrTxClosed, "the queue is gone with the transaction")
	require.Zero(t, b.db.Pool.Stat().AcquiredConns())
	require.Zero(t, b.rows(t))
}

// A queued INSERT that fails at the commit fails Commit with an error that
// names the write, rolls everything back (the UPDATE too), returns the
// connection in good state, and frees the Writer's NOTIFY for its next
// write: in every exec mode.
func TestPgxTxFailingWriteRollsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	_, err := b.db.Pool.Exec(ctx, `INSERT INTO items VALUES (1, 0)`)
	require.NoError(t, err)
	// A row whose payload holds "refuse" violates this.
	_, err = b.db.Pool.Exec(ctx, `ALTER TABLE `+outbox.DefaultTable+
		` ADD CONSTRAINT test_refuse CHECK (position('refuse'::bytea in payload) = 0)`)
	require.NoError(t, err)
	listener, err := pgx.Connect(ctx, b.db.DSN)
	require.NoError(t, err)
	defer listener.Close(ctx)
	_, err = listener.Exec(ctx, `LISTEN `+outbox.DefaultTable)
	require.NoError(t, err)
	notified := func() bool {
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := listener.WaitForNotification(wctx)
		return err == nil
	}

	for name, mode := range execModes {
		pool, _ := b.pool(t, mode)
		w := b.writer(t, outbox.WithNotifyInterval(time.Hour)) // only its first write notifies, unless freed
		tx := begin(t, pool)
		_, err := tx.Exec(ctx, `UPDATE items SET v = v + 1 WHERE id = 1`)
		require.NoError(t, err, name)
		require.NoError(t, w.DeleteKeys(ctx, tx, "refuse:1"), name) // takes the NOTIFY
		require.NoError(t, w.BumpVersion(ctx, tx, "feed", map[string]string{"user": "1"}), name)
		err = tx.Commit(ctx)
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "%s: %v", name, err)
		require.Equal(t, "23514", pgErr.Code, "%s: the CHECK's violation: %v", name, err)
		require.Contains(t, err.Error(), "outbox delete keys", name)
		require.Zero(t, pool.Stat().AcquiredConns(), name)
		require.EqualValues(t, 1, pool.Stat().TotalConns(), "%s: rolled back, the connection was kept", name)
		require.Zero(t, b.rows(t), name)
		require.Zero(t, b.item(t, 1), "%s: the UPDATE rolled back", name)
		require.ErrorIs(t, tx.Rollback(ctx), pgx.ErrTxClosed, name)
		require.False(t, notified(), name)

		// The connection is fine, and the failed write's NOTIFY went to the
		// Writer's next write.
		tx = begin(t, pool)
		require.NoError(t, w.DeleteKeys(ctx, tx, "ok"), name)
		require.NoError(t, tx.Commit(ctx), name)
		require.True(t, notified(), "%s: the next write notifies", name)
		require.Equal(t, 1, b.rows(t), name)
		_, err = b.db.Pool.Exec(ctx, `DELETE FROM `+outbox.DefaultTable)
		require.NoError(t, err)
	}
}

// A transaction aborted by an earlier error commits nothing: Commit
// returns pgx.ErrTxCommitRollback, as pgx does.
func TestPgxTxCommitOfAbortedTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	_, err := b.db.Pool.Exec(ctx, `INSERT INTO items VALUES (1, 0)`)
	require.NoError(t, err)
	tx := begin(t, b.db.Pool)
	_, err = tx.Exec(ctx, `UPDATE items SET v = v + 1 WHERE id = 1`)
	require.NoError(t, err)
	require.NoError(t, b.w.DeleteKeys(ctx, tx, "k"))
	_, err = tx.Exec(ctx, `SELECT 1/0`)
	require.Error(t, err, "the caller ignores it")
	require.ErrorIs(t, tx.Commit(ctx), pgx.ErrTxCommitRollback)
	require.Zero(t, b.db.Pool.Stat().AcquiredConns())
	require.Zero(t, b.rows(t))
	require.Zero(t, b.item(t, 1))
}

// A write queued on the transaction under a savepoint that rolls back is
// still sent at the commit (an extra invalidation, never a lost one); a
// write through the savepoint itself goes with it. The savepoint closes
// with its transaction.
func TestPgxTxSavepoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	_, err := b.db.Pool.Exec(ctx, `INSERT INTO items VALUES (1, 0)`)
	require.NoError(t, err)
	tx := begin(t, b.db.Pool)
	require.NoError(t, b.w.DeleteKeys(ctx, tx, "outer"))
	sp, err := tx.Begin(ctx)
	require.NoError(t, err)
	_, err = sp.Exec(ctx, `UPDATE items SET v = v + 1 WHERE id = 1`)
	require.NoError(t, err)
	require.NoError(t, b.w.DeleteKeys(ctx, tx, "queued-under-savepoint"))
	require.NoError(t, b.w.DeleteKeys(ctx, outbox.Pgx(sp), "in-savepoint"))
	require.Equal(t, 1, b.rowsIn(t, tx), "the savepoint's write went at once")
	require.NoError(t, sp.Rollback(ctx))
	kept, err := tx.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, b.w.DeleteKeys(ctx, outbox.Pgx(kept), "in-released-savepoint"))
	require.NoError(t, kept.Commit(ctx))
	open, err := tx.Begin(ctx) // still open at the commit
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	require.Zero(t, b.item(t, 1), "the savepoint's UPDATE rolled back")

	n, err := b.relay(t, nil).Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Equal(t, map[string]int{"outer": 1, "queued-under-savepoint": 1, "in-released-savepoint": 1},
		b.queuedKeys(t, "invalidator-standard"))

	// The connection is back in the pool: a savepoint of the ended
	// transaction must not reach it.
	_, err = open.Exec(ctx, `SELECT 1`)
	require.ErrorIs(t, err, pgx.ErrTxClosed)
	_, err = open.Begin(ctx)
	require.ErrorIs(t, err, pgx.ErrTxClosed)
	require.ErrorIs(t, open.Rollback(ctx), pgx.ErrTxClosed)
	_, err = tx.Begin(ctx)
	require.ErrorIs(t, err, pgx.ErrTxClosed)
}

// rowsIn counts the outbox rows tx sees.
func (b *bundle) rowsIn(t *testing.T, tx pgx.Tx) int {
	t.Helper()
	var n int
	require.NoError(t, tx.QueryRow(context.Background(), "SELECT count(*) FROM "+outbox.DefaultTable).Scan(&n))
	return n
}

// A COMMIT that fails on its own (here a deferred foreign key) returns its
// error as pgx's Commit does: nothing is committed, and the connection,
// out of the transaction, stays in the pool.
func TestPgxTxCommitError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	_, err := b.db.Pool.Exec(ctx, `CREATE TABLE child (pid int REFERENCES items DEFERRABLE INITIALLY DEFERRED)`)
	require.NoError(t, err)
	pool, _ := b.pool(t, pgx.QueryExecModeCacheStatement)
	tx := begin(t, pool)
	_, err = tx.Exec(ctx, `INSERT INTO child VALUES (7)`) // no item 7: checked at the COMMIT
	require.NoError(t, err)
	require.NoError(t, b.w.DeleteKeys(ctx, tx, "k"))
	err = tx.Commit(ctx)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%v", err)
	require.Equal(t, "23503", pgErr.Code, "the COMMIT's foreign key violation: %v", err)
	require.NotContains(t, err.Error(), "outbox", "the writes went in; the COMMIT failed")
	require.Zero(t, b.rows(t))
	require.Zero(t, pool.Stat().AcquiredConns())
	require.EqualValues(t, 1, pool.Stat().TotalConns(), "the connection was kept")
}

// A Commit whose context is already done commits nothing and does not
// hand a connection in a transaction back to the pool.
func TestPgxTxCommitCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pool, _ := b.pool(t, pgx.QueryExecModeCacheStatement)
	tx := begin(t, pool)
	require.NoError(t, b.w.DeleteKeys(context.Background(), tx, "k"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, tx.Commit(ctx), context.Canceled)
	// pgxpool destroys a connection in the background; until then it
	// counts as acquired.
	require.Eventually(t, func() bool { return pool.Stat().TotalConns() == 0 }, 5*time.Second, 5*time.Millisecond,
		"destroyed, not returned in its transaction")
	require.Zero(t, b.rows(t))
	require.ErrorIs(t, tx.Rollback(context.Background()), pgx.ErrTxClosed)
}
