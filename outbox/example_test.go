package outbox_test

import (
	"context"
	"database/sql"
	"log"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/outbox"
)

// The application writes its data and the invalidation in one transaction.
func ExampleWriter() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@db.internal/shop")
	if err != nil {
		log.Fatal(err)
	}
	policy, err := keyspec.Load("policy.yaml")
	if err != nil {
		log.Fatal(err)
	}
	w, err := outbox.NewWriter(enqueue.NewBuilder(enqueue.Config{Policy: policy}), outbox.Config{})
	if err != nil {
		log.Fatal(err)
	}

	// The outbox writes ride the COMMIT: no round trip of their own.
	tx, err := outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }() // a no-op after Commit
	if _, err := tx.Exec(ctx, `UPDATE products SET price = $1 WHERE id = $2`, 1999, 42); err != nil {
		log.Fatal(err)
	}
	// Refused here (unknown event, missing attribute) means: roll back.
	if err := w.Publish(ctx, tx, "product.updated", map[string]string{"id": "42"}); err != nil {
		log.Fatal(err)
	}
	// Sends the queued INSERT and the COMMIT together. A failed INSERT
	// fails it, and the transaction is rolled back.
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
}

// A pgx.Tx you are handed and cannot begin yourself: each write is its own
// statement, one round trip.
func ExamplePgx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@db.internal/shop")
	if err != nil {
		log.Fatal(err)
	}
	w, err := outbox.NewWriter(enqueue.NewBuilder(enqueue.Config{}), outbox.Config{})
	if err != nil {
		log.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE users SET name = $1 WHERE id = $2`, "Ada", 7); err != nil {
			return err
		}
		return w.DeleteKeys(ctx, outbox.Pgx(tx), "user:{7}:profile")
	})
	if err != nil {
		log.Fatal(err)
	}
}

// With database/sql, wrap the *sql.Tx.
func ExampleSQL() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://app@db.internal/shop")
	if err != nil {
		log.Fatal(err)
	}
	w, err := outbox.NewWriter(enqueue.NewBuilder(enqueue.Config{}), outbox.Config{})
	if err != nil {
		log.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `UPDATE users SET name = $1 WHERE id = $2`, "Ada", 7); err != nil {
		log.Fatal(err)
	}
	if err := w.DeleteKeys(ctx, outbox.SQL(tx), "user:{7}:profile"); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}
}

// A relay process: create or upgrade the table, then move rows to the queue
// until stopped. Run as many as you like.
func ExampleRelay() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://relay@db.internal/shop")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := outbox.Migrate(ctx, pool, outbox.Config{}); err != nil {
		log.Fatal(err)
	}
	r, err := outbox.NewRelay(outbox.RelayConfig{
		DB:     pool,
		Queue:  redis.NewClient(&redis.Options{Addr: "queue-redis.internal:6379"}),
		Logger: slog.Default(),
	})
	if err != nil {
		log.Fatal(err)
	}
	// r.Ready is the /readyz check.
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
