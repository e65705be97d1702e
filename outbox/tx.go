package outbox

import (
	"context"
	"database/sql"
	"errors"

	"github.com/jackc/pgx/v5"
)

// Tx is the caller's open transaction, which a Writer writes into: a
// *PgxTx (BeginPgx), whose writes ride its COMMIT; a pgx transaction
// wrapped with Pgx, or a database/sql one with SQL, whose writes are sent
// at once; or a pgx.Batch the caller sends in its transaction (PgxBatch).
// Only these implement it, so a write can never go outside a transaction by
// mistake.
type Tx interface {
	exec(ctx context.Context, s stmt) error
}

// stmt is one write's INSERT.
type stmt struct {
	what string // names the write in errors: "delete keys", "publish \"x\""
	sql  string
	args []any
	// release, set when the INSERT carries the Writer's NOTIFY, frees the
	// Writer's notify gate: a *PgxTx calls it when its queued write will
	// never commit, as write does when an INSERT sent at once fails.
	release func()
}

// Pgx wraps a jackc/pgx v5 transaction (from pgx.Conn or pgxpool.Pool
// Begin). Each write is sent at once, its own statement: one round trip.
// Where you begin the transaction yourself, begin it with BeginPgx instead,
// whose writes ride the COMMIT; Pgx is for a pgx.Tx you are handed, and for
// a savepoint (tx.Begin), whose writes must go inside it.
func Pgx(tx pgx.Tx) Tx { return pgxTx{tx} }

// SQL wraps a database/sql transaction on a PostgreSQL driver (pgx's
// stdlib, lib/pq).
func SQL(tx *sql.Tx) Tx { return sqlTx{tx} }

// PgxBatch queues the write into b, a batch the caller sends within its
// transaction (tx.SendBatch) with its own statements: the write then costs
// no round trip of its own. Validation errors still return at once; a
// database error comes from the batch's results, which the caller must read
// before committing.
//
//	batch := &pgx.Batch{}
//	batch.Queue(`UPDATE products SET price = $1 WHERE id = $2`, price, id)
//	err := w.Publish(ctx, outbox.PgxBatch(batch), "product.updated", map[string]string{"id": id})
//	...
//	err = tx.SendBatch(ctx, batch).Close() // the first error of any statement
func PgxBatch(b *pgx.Batch) Tx { return pgxBatch{b} }

type pgxBatch struct{ b *pgx.Batch }

func (q pgxBatch) exec(_ context.Context, s stmt) error {
	if q.b == nil {
		return errors.New("nil pgx.Batch")
	}
	q.b.Queue(s.sql, s.args...)
	return nil
}

type pgxTx struct{ tx pgx.Tx }

func (t pgxTx) exec(ctx context.Context, s stmt) error {
	if t.tx == nil {
		return errors.New("nil pgx.Tx")
	}
	_, err := t.tx.Exec(ctx, s.sql, s.args...)
	return err
}

type sqlTx struct{ tx *sql.Tx }

func (t sqlTx) exec(ctx context.Context, s stmt) error {
	if t.tx == nil {
		return errors.New("nil *sql.Tx")
	}
	_, err := t.tx.ExecContext(ctx, s.sql, s.args...)
	return err
}
