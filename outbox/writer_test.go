package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/outbox"
	"github.com/invalidator/invalidator/tasks"
)

// Every kind, through pgx and through database/sql, arrives on its class's
// queue exactly as enqueue would have put it there.
func TestWritersRelayEveryKind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	sdb, err := sql.Open("pgx", b.db.DSN)
	require.NoError(t, err)
	defer sdb.Close()

	write := func(tx outbox.Tx, prefix string) {
		require.NoError(t, b.w.DeleteKeys(ctx, tx, prefix+":a", prefix+":b\xff\x00"))
		require.NoError(t, b.w.DeleteFamily(ctx, tx, "price", map[string]string{"sku": prefix}))
		require.NoError(t, b.w.BumpVersion(ctx, tx, "feed", map[string]string{"user": prefix}))
		require.NoError(t, b.w.Publish(ctx, tx, "product.updated", map[string]string{"id": prefix}))
	}
	b.inTx(t, func(tx pgx.Tx) error { write(outbox.Pgx(tx), "pgx"); return nil })
	stx, err := sdb.BeginTx(ctx, nil)
	require.NoError(t, err)
	write(outbox.SQL(stx), "sql")
	require.NoError(t, stx.Commit())
	require.Equal(t, 8, b.rows(t))

	n, err := b.relay(t, nil).Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 8, n)
	require.Zero(t, b.rows(t))

	standard, prices := b.queued(t, "invalidator-standard"), b.queued(t, "prices")
	var keys []string
	var bumps, families, events []string
	for _, task := range append(standard, prices...) {
		switch v := task.(type) {
		case tasks.DeleteKeys:
			keys = append(keys, v.Keys...)
		case tasks.BumpVersion:
			bumps = append(bumps, v.Params["user"])
		case tasks.DeleteFamily:
			families = append(families, v.Params["sku"])
		case tasks.Event:
			events = append(events, v.Attrs["id"])
		}
	}
	require.ElementsMatch(t, []string{"pgx:a", "pgx:b\xff\x00", "sql:a", "sql:b\xff\x00"}, keys, "keys are bytes")
	require.ElementsMatch(t, []string{"pgx", "sql"}, bumps)
	require.ElementsMatch(t, []string{"pgx", "sql"}, families)
	require.ElementsMatch(t, []string{"pgx", "sql"}, events)
	require.Len(t, standard, 3, "the key deletes of both transactions merged into one task, plus two bumps")

	// Options come from the class, as with enqueue.
	infos, err := b.insp.ListPendingTasks("prices")
	require.NoError(t, err)
	for _, ti := range infos {
		require.Equal(t, 25, ti.MaxRetry)
	}
}

// A rolled-back transaction leaves no row and enqueues nothing, through
// either driver.
func TestRolledBackTransactionLeavesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, b.w.DeleteKeys(ctx, outbox.Pgx(tx), "k1"))
	require.NoError(t, b.w.Publish(ctx, outbox.Pgx(tx), "product.updated", map[string]string{"id": "1"}))
	require.NoError(t, tx.Rollback(ctx))

	sdb, err := sql.Open("pgx", b.db.DSN)
	require.NoError(t, err)
	defer sdb.Close()
	stx, err := sdb.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, b.w.DeleteKeys(ctx, outbox.SQL(stx), "k2"))
	require.NoError(t, stx.Rollback())

	require.Zero(t, b.rows(t))
	n, err := b.relay(t, nil).Drain(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	queues, err := b.insp.Queues()
	require.NoError(t, err)
	require.Empty(t, queues)
}

// Bad input fails at the write site with enqueue's errors, before anything
// is written, so the caller can roll back.
func TestRefusedAtTheWriteSite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	builder := enqueue.NewBuilder(enqueue.Config{Policy: b.policy})
	bad := b.w.With(enqueue.Queue("nope"))
	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	otx := outbox.Pgx(tx)
	for _, tc := range []struct {
		name  string
		write func() error
		build func() error
		is    error
	}{
		{"no keys", func() error { return b.w.DeleteKeys(ctx, otx) },
			func() error { _, err := builder.DeleteKeys(); return err }, tasks.ErrInvalid},
		{"empty key", func() error { return b.w.DeleteKeys(ctx, otx, "a", "") },
			func() error { _, err := builder.DeleteKeys("a", ""); return err }, tasks.ErrInvalid},
		{"unknown family", func() error { return b.w.DeleteFamily(ctx, otx, "nope", nil) },
			func() error { _, err := builder.DeleteFamily("nope", nil); return err }, keyspec.ErrUnknownFamily},
		{"unknown param", func() error { return b.w.DeleteFamily(ctx, otx, "price", map[string]string{"id": "1"}) },
			func() error { _, err := builder.DeleteFamily("price", map[string]string{"id": "1"}); return err }, keyspec.ErrUnknownParam},
		{"not versioned", func() error { return b.w.BumpVersion(ctx, otx, "price", map[string]string{"sku": "1"}) },
			func() error { _, err := builder.BumpVersion("price", map[string]string{"sku": "1"}); return err }, keyspec.ErrNotVersioned},
		{"unknown event", func() error { return b.w.Publish(ctx, otx, "nope", nil) },
			func() error { _, err := builder.Publish("nope", nil); return err }, keyspec.ErrUnknownEvent},
		{"missing attribute", func() error { return b.w.Publish(ctx, otx, "product.updated", nil) },
			func() error { _, err := builder.Publish("product.updated", nil); return err }, keyspec.ErrMissingParam},
		{"unknown queue", func() error { return bad.DeleteKeys(ctx, otx, "k") },
			func() error { _, err := builder.With(enqueue.Queue("nope")).DeleteKeys("k"); return err }, enqueue.ErrUnknownQueue},
	} {
		err, want := tc.write(), tc.build()
		require.ErrorIs(t, err, tc.is, tc.name)
		require.Equal(t, "outbox "+want.Error(), err.Error(), tc.name)
	}
	// The transaction is still usable: nothing was sent to the database.
	require.NoError(t, b.w.DeleteKeys(ctx, otx, "ok"))
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 1, b.rows(t))

	require.Error(t, b.w.DeleteKeys(ctx, nil, "k"), "a nil Tx is refused")
	require.Error(t, b.w.DeleteKeys(ctx, outbox.Pgx(nil), "k"))
	require.Error(t, b.w.DeleteKeys(ctx, outbox.SQL(nil), "k"))
	require.Error(t, b.w.DeleteKeys(ctx, outbox.PgxBatch(nil), "k"))
}

// A write queued in the caller's pgx.Batch commits with the batch's own
// statements, or not at all.
func TestPgxBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	_, err := b.db.Pool.Exec(ctx, `INSERT INTO items VALUES (1, 0)`)
	require.NoError(t, err)
	for _, commit := range []bool{false, true} {
		tx, err := b.db.Pool.Begin(ctx)
		require.NoError(t, err)
		batch := &pgx.Batch{}
		batch.Queue(`UPDATE items SET v = v + 1 WHERE id = 1`)
		require.NoError(t, b.w.DeleteKeys(ctx, outbox.PgxBatch(batch), fmt.Sprint("item:1:", commit)))
		require.ErrorIs(t, b.w.DeleteFamily(ctx, outbox.PgxBatch(batch), "nope", nil), keyspec.ErrUnknownFamily)
		require.Equal(t, 2, batch.Len(), "a refused write queues nothing")
		require.NoError(t, tx.SendBatch(ctx, batch).Close())
		if commit {
			require.NoError(t, tx.Commit(ctx))
		} else {
			require.NoError(t, tx.Rollback(ctx))
		}
	}
	n, err := b.relay(t, nil).Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, map[string]int{"item:1:true": 1}, b.queuedKeys(t, "invalidator-standard"))
}
