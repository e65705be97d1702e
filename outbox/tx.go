package outbox

import (
	"context"
	"database/sql"

	"github.com/jackc/pgx/v5"
)

// Tx is the caller's open transaction, which a Writer writes into: wrap a
// pgx transaction with Pgx, a database/sql one with SQL. Only these two
// implement it, so a write can never go outside a transaction by mistake.
type Tx interface {
	exec(ctx context.Context, sql string, args ...any) error
}

// Pgx wraps a jackc/pgx v5 transaction (from pgx.Conn or pgxpool.Pool Begin).
func Pgx(tx pgx.Tx) Tx { return pgxTx{tx} }

// SQL wraps a database/sql transaction on a PostgreSQL driver (pgx's
// stdlib, lib/pq).
func SQL(tx *sql.Tx) Tx { return sqlTx{tx} }

type pgxTx struct{ tx pgx.Tx }

func (t pgxTx) exec(ctx context.Context, sql string, args ...any) error {
	_, err := t.tx.Exec(ctx, sql, args...)
	return err
}

type sqlTx struct{ tx *sql.Tx }

func (t sqlTx) exec(ctx context.Context, sql string, args ...any) error {
	_, err := t.tx.ExecContext(ctx, sql, args...)
	return err
}
