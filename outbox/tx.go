package outbox

import (
	"context"
	"database/sql"
	"errors"

	"github.com/jackc/pgx/v5"
)

// Tx is the caller's open transaction, which a Writer writes into: wrap a
// pgx transaction with Pgx, a database/sql one with SQL, or queue the write
// into a pgx.Batch with PgxBatch. Only these implement it, so a write can
// never go outside a transaction by mistake.
type Tx interface {
	exec(ctx context.Context, sql string, args ...any) error
}

// Pgx wraps a jackc/pgx v5 transaction (from pgx.Conn or pgxpool.Pool Begin).
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

func (q pgxBatch) exec(_ context.Context, sql string, args ...any) error {
	if q.b == nil {
		return errors.New("nil pgx.Batch")
	}
	q.b.Queue(sql, args...)
	return nil
}

type pgxTx struct{ tx pgx.Tx }

func (t pgxTx) exec(ctx context.Context, sql string, args ...any) error {
	if t.tx == nil {
		return errors.New("nil pgx.Tx")
	}
	_, err := t.tx.Exec(ctx, sql, args...)
	return err
}

type sqlTx struct{ tx *sql.Tx }

func (t sqlTx) exec(ctx context.Context, sql string, args ...any) error {
	if t.tx == nil {
		return errors.New("nil *sql.Tx")
	}
	_, err := t.tx.ExecContext(ctx, sql, args...)
	return err
}
