package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/outbox"
)

// onePool is a pool of one connection in mode m: a leaked connection
// deadlocks the next Acquire, which the short context turns into a failure.
func (b *bundle) onePool(t *testing.T, m pgx.QueryExecMode) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(b.db.DSN)
	require.NoError(t, err)
	cfg.MaxConns = 1
	cfg.ConnConfig.DefaultQueryExecMode = m
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

func acquireOK(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pool.Acquire(ctx)
	require.NoError(t, err, "connection leaked")
	require.Equal(t, byte('I'), c.Conn().PgConn().TxStatus())
	c.Release()
}

func TestPgxTxPathsReleaseOnce(t *testing.T) {
	for name, m := range execModes {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b := setup(t)
			_, err := b.db.Pool.Exec(ctx, `CREATE TABLE child (pid int REFERENCES items DEFERRABLE INITIALLY DEFERRED)`)
			require.NoError(t, err)
			pool := b.onePool(t, m)
			want := 0

			// 1. success
			tx, err := outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
			require.NoError(t, err)
			_, err = tx.Exec(ctx, `INSERT INTO items VALUES (1, 1)`)
			require.NoError(t, err)
			require.NoError(t, b.w.DeleteKeys(ctx, tx, "k1"))
			require.NoError(t, tx.Commit(ctx))
			want++
			require.ErrorIs(t, tx.Rollback(ctx), pgx.ErrTxClosed)
			require.ErrorIs(t, b.w.DeleteKeys(ctx, tx, "late"), pgx.ErrTxClosed)
			acquireOK(t, pool)
			require.Equal(t, want, b.rows(t))

			// 2. deferred constraint fails at COMMIT
			tx, err = outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
			require.NoError(t, err)
			_, err = tx.Exec(ctx, `INSERT INTO child VALUES (99)`)
			require.NoError(t, err)
			require.NoError(t, b.w.DeleteKeys(ctx, tx, "k2"))
			require.Error(t, tx.Commit(ctx))
			acquireOK(t, pool)
			require.Equal(t, want, b.rows(t))

			// 3. read-only: the INSERT fails at commit
			tx, err = outbox.BeginPgx(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadOnly})
			require.NoError(t, err)
			require.NoError(t, b.w.DeleteKeys(ctx, tx, "k3"))
			require.Error(t, tx.Commit(ctx))
			acquireOK(t, pool)
			require.Equal(t, want, b.rows(t))

			// 4. savepoints: write in a rolled-back savepoint via Pgx(sp) is gone, queued one stays
			tx, err = outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
			require.NoError(t, err)
			sp, err := tx.Begin(ctx)
			require.NoError(t, err)
			require.NoError(t, b.w.DeleteKeys(ctx, outbox.Pgx(sp), "sp-gone"))
			require.NoError(t, b.w.DeleteKeys(ctx, tx, "queued-in-sp"))
			sp2, err := sp.Begin(ctx)
			require.NoError(t, err)
			require.NoError(t, b.w.DeleteKeys(ctx, outbox.Pgx(sp2), "sp2-kept"))
			require.NoError(t, sp2.Commit(ctx))
			require.NoError(t, sp.Rollback(ctx)) // drops sp-gone and sp2-kept
			sp3, err := tx.Begin(ctx)
			require.NoError(t, err)
			require.NoError(t, b.w.DeleteKeys(ctx, outbox.Pgx(sp3), "sp3"))
			// sp3 left open: the COMMIT commits it
			require.NoError(t, tx.Commit(ctx))
			want += 2 // queued-in-sp, sp3
			_, err = sp3.Exec(ctx, `SELECT 1`)
			require.ErrorIs(t, err, pgx.ErrTxClosed)
			_, err = sp3.Begin(ctx)
			require.ErrorIs(t, err, pgx.ErrTxClosed)
			acquireOK(t, pool)
			require.Equal(t, want, b.rows(t))

			// 5. failed statement inside a savepoint, rolled back to: commit works
			tx, err = outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
			require.NoError(t, err)
			require.NoError(t, b.w.DeleteKeys(ctx, tx, "k5"))
			sp, err = tx.Begin(ctx)
			require.NoError(t, err)
			_, err = sp.Exec(ctx, `SELECT 1/0`)
			require.Error(t, err)
			require.NoError(t, sp.Rollback(ctx))
			require.NoError(t, tx.Commit(ctx))
			want++
			acquireOK(t, pool)
			require.Equal(t, want, b.rows(t))

			// 6. aborted transaction
			tx, err = outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
			require.NoError(t, err)
			require.NoError(t, b.w.DeleteKeys(ctx, tx, "k6"))
			_, err = tx.Exec(ctx, `SELECT 1/0`)
			require.Error(t, err)
			require.ErrorIs(t, tx.Commit(ctx), pgx.ErrTxCommitRollback)
			acquireOK(t, pool)
			require.Equal(t, want, b.rows(t))

			// 7. CommitQuery
			tx, err = outbox.BeginPgx(ctx, pool, pgx.TxOptions{CommitQuery: "COMMIT"})
			require.NoError(t, err)
			require.NoError(t, b.w.DeleteKeys(ctx, tx, "k7"))
			require.NoError(t, tx.Commit(ctx))
			want++
			acquireOK(t, pool)
			require.Equal(t, want, b.rows(t))

			// 8. panic between begin and commit with a deferred Rollback
			func() {
				defer func() { _ = recover() }()
				tx, err := outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
				require.NoError(t, err)
				defer tx.Rollback(ctx) //nolint:errcheck
				require.NoError(t, b.w.DeleteKeys(ctx, tx, "k8"))
				panic("boom")
			}()
			acquireOK(t, pool)
			require.Equal(t, want, b.rows(t))

			// 9. user sent COMMIT through Exec: error, no silent success
			tx, err = outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
			require.NoError(t, err)
			require.NoError(t, b.w.DeleteKeys(ctx, tx, "k9"))
			_, err = tx.Exec(ctx, `COMMIT`)
			require.NoError(t, err)
			require.Error(t, tx.Commit(ctx))
			acquireOK(t, pool)
			require.Equal(t, want, b.rows(t))

			// 10. cancelled ctx mid-transaction, conn still usable after
			tx, err = outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
			require.NoError(t, err)
			require.NoError(t, b.w.DeleteKeys(ctx, tx, "k10"))
			cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			_, err = tx.Exec(cctx, `SELECT pg_sleep(1)`)
			cancel()
			require.Error(t, err)
			require.Error(t, tx.Commit(ctx))
			acquireOK(t, pool)
			require.Equal(t, want, b.rows(t))
		})
	}
}

// Two SERIALIZABLE transactions with a write skew: the loser fails at its
// COMMIT (or an INSERT), and then neither its data nor its outbox row is in.
func TestPgxTxSerializationFailure(t *testing.T) {
	ctx := context.Background()
	b := setup(t)
	pool := b.onePool(t, pgx.QueryExecModeCacheStatement)
	pool2 := b.onePool(t, pgx.QueryExecModeCacheStatement)
	_, err := b.db.Pool.Exec(ctx, `INSERT INTO items VALUES (1, 0), (2, 0)`)
	require.NoError(t, err)
	opts := pgx.TxOptions{IsoLevel: pgx.Serializable}
	t1, err := outbox.BeginPgx(ctx, pool, opts)
	require.NoError(t, err)
	t2, err := outbox.BeginPgx(ctx, pool2, opts)
	require.NoError(t, err)
	var s int
	require.NoError(t, t1.QueryRow(ctx, `SELECT sum(v) FROM items`).Scan(&s))
	require.NoError(t, t2.QueryRow(ctx, `SELECT sum(v) FROM items`).Scan(&s))
	_, err = t1.Exec(ctx, `UPDATE items SET v = 1 WHERE id = 1`)
	require.NoError(t, err)
	_, err = t2.Exec(ctx, `UPDATE items SET v = 1 WHERE id = 2`)
	require.NoError(t, err)
	require.NoError(t, b.w.DeleteKeys(ctx, t1, "a"))
	require.NoError(t, b.w.DeleteKeys(ctx, t2, "b"))
	require.NoError(t, t1.Commit(ctx))
	err = t2.Commit(ctx)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%v", err)
	require.Equal(t, "40001", pgErr.Code)
	require.Equal(t, 1, b.rows(t))
	require.Equal(t, 1, b.item(t, 1))
	require.Equal(t, 0, b.item(t, 2))
	acquireOK(t, pool)
	acquireOK(t, pool2)
}

// A Commit whose context ends while the batch runs (a slow INSERT, or a
// slow deferred trigger at the COMMIT): the data is in iff the outbox row
// is, and the single connection comes back or is destroyed.
func TestPgxTxCancelMidBatch(t *testing.T) {
	for _, where := range []string{"insert", "commit", "late"} {
		for name, m := range execModes {
			if where != "late" && name != "cache_statement" && name != "simple_protocol" {
				continue // the cancel that lands: two modes are enough
			}
			t.Run(where+"/"+name, func(t *testing.T) {
				ctx := context.Background()
				b := setup(t)
				if where == "insert" {
					_, err := b.db.Pool.Exec(ctx, `CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END$$`)
					require.NoError(t, err)
					_, err = b.db.Pool.Exec(ctx, `CREATE TRIGGER slow BEFORE INSERT ON `+b.table()+` FOR EACH ROW EXECUTE FUNCTION slow()`)
					require.NoError(t, err)
				} else if where == "late" {
					// The cancel request pgx sends when it gives up lands too
					// late (or never, across a partition): the server commits.
					_, err := b.db.Pool.Exec(ctx, `CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN BEGIN PERFORM pg_sleep(0.3); EXCEPTION WHEN query_canceled THEN NULL; END; RETURN NEW; END$$`)
					require.NoError(t, err)
					_, err = b.db.Pool.Exec(ctx, `CREATE TRIGGER slow BEFORE INSERT ON `+b.table()+` FOR EACH ROW EXECUTE FUNCTION slow()`)
					require.NoError(t, err)
				} else {
					_, err := b.db.Pool.Exec(ctx, `CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END$$`)
					require.NoError(t, err)
					_, err = b.db.Pool.Exec(ctx, `CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON items DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow()`)
					require.NoError(t, err)
				}
				pool := b.onePool(t, m)
				tx, err := outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
				require.NoError(t, err)
				_, err = tx.Exec(ctx, `INSERT INTO items VALUES (1, 1)`)
				require.NoError(t, err)
				require.NoError(t, b.w.DeleteKeys(ctx, tx, "k"))
				cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				cerr := tx.Commit(cctx)
				cancel()
				t.Logf("commit: %v", cerr)
				time.Sleep(600 * time.Millisecond) // let the server finish what it was sent
				var items int
				require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM items`).Scan(&items))
				require.Equal(t, items, b.rows(t), "data and outbox row disagree")
				if cerr == nil {
					require.Equal(t, 1, items, "nil Commit, nothing committed")
				}
				if items == 1 {
					require.NotContains(t, cerr.Error(), "rolled back", "Commit says rolled back, but the data and the outbox row committed")
					require.Contains(t, cerr.Error(), "may have committed")
				}
				if where == "late" {
					require.Equal(t, 1, items, "the server committed after the client gave up")
				}
				acquireOK(t, pool)
			})
		}
	}
}

// Writes queued from several goroutines at once (say, handlers fanning
// out inside one request's transaction): each write that returned nil
// commits. pgx's own transaction fails such misuse loudly (conn busy); a
// queue appended without a lock lost writes silently.
func TestPgxTxConcurrentWritesAllCommit(t *testing.T) {
	ctx := context.Background()
	b := setup(t)
	pool := b.onePool(t, pgx.QueryExecModeCacheStatement)
	tx, err := outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
	require.NoError(t, err)
	const goroutines, each = 8, 50
	var wg sync.WaitGroup
	var ok atomic.Int64
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if b.w.DeleteKeys(ctx, tx, fmt.Sprintf("g%d:%d", g, i)) == nil {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, tx.Commit(ctx))
	require.EqualValues(t, ok.Load(), b.rows(t))
	acquireOK(t, pool)
}

// Commit and a write racing it: the write either commits or fails.
func TestPgxTxWriteRacingCommit(t *testing.T) {
	ctx := context.Background()
	b := setup(t)
	pool := b.onePool(t, pgx.QueryExecModeCacheStatement)
	for range 20 {
		tx, err := outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
		require.NoError(t, err)
		before := b.rows(t)
		var ok atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range 200 {
				if b.w.DeleteKeys(ctx, tx, fmt.Sprintf("k%d", i)) == nil {
					ok.Add(1)
				}
			}
		}()
		require.NoError(t, tx.Commit(ctx))
		<-done
		require.EqualValues(t, before+int(ok.Load()), b.rows(t), "a write returned nil but did not commit")
		acquireOK(t, pool)
	}
}

// Commit and Rollback racing (a deferred Rollback in another goroutine):
// one ends the transaction, the other returns pgx.ErrTxClosed, and the one
// connection is released once.
func TestPgxTxCommitRacingRollback(t *testing.T) {
	ctx := context.Background()
	b := setup(t)
	pool := b.onePool(t, pgx.QueryExecModeCacheStatement)
	for range 20 {
		tx, err := outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
		require.NoError(t, err)
		require.NoError(t, b.w.DeleteKeys(ctx, tx, "k"))
		errs := make(chan error, 2)
		go func() { errs <- tx.Commit(ctx) }()
		go func() { errs <- tx.Rollback(ctx) }()
		e1, e2 := <-errs, <-errs
		closed := 0
		for _, e := range []error{e1, e2} {
			if errors.Is(e, pgx.ErrTxClosed) {
				closed++
			} else {
				require.NoError(t, e)
			}
		}
		require.Equal(t, 1, closed, "%v, %v", e1, e2)
		acquireOK(t, pool)
		require.EqualValues(t, 1, pool.Stat().TotalConns())
	}
}
