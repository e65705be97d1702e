package outbox_test

// The README's code, compiled (see examples/readme_test.go). Compiled, not
// run: it needs PostgreSQL.

//lint:file-ignore SA4006 the README shows the calls; an application checks each err

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/outbox"
)

// README, "Lossless enqueue: the transactional outbox".
func Example_readmeWriter() {
	ctx := context.Background()
	pool, _ := pgxpool.New(ctx, "postgres://app@db.internal/shop")
	policy := keyspec.Default()
	price, id := 1999, "42"

	w, err := outbox.NewWriter(enqueue.NewBuilder(enqueue.Config{Policy: policy}), outbox.Config{})

	tx, err := outbox.BeginPgx(ctx, pool, pgx.TxOptions{}) // with database/sql, wrap the *sql.Tx with outbox.SQL(tx)
	_, err = tx.Exec(ctx, `UPDATE products SET price = $1 WHERE id = $2`, price, id)
	err = w.Publish(ctx, tx, "product.updated", map[string]string{"id": id}) // or DeleteKeys, DeleteFamily, BumpVersion: queued
	// the invalidation commits with the data, or neither does; it rides the
	// COMMIT's round trip:
	err = tx.Commit(ctx)

	_ = err
}
