package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/outbox"
)

// An outbox table of the same name in two schemas, and a writer whose
// search_path finds the other one (a per-tenant search_path): a relay with
// no schema set would read one table while rows wait in the other, forever
// and silently. It refuses to run instead, and a relay told the schema
// relays the rows written there.
func TestRelayRefusesATableNameSeveralSchemasHold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	_, err := b.db.Pool.Exec(ctx, `CREATE SCHEMA tenant`)
	require.NoError(t, err)
	_, err = outbox.Migrate(ctx, b.db.Pool, outbox.Config{Schema: "tenant"})
	require.NoError(t, err)
	b.inTx(t, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL search_path TO tenant, public`); err != nil {
			return err
		}
		return b.w.DeleteKeys(ctx, outbox.Pgx(tx), "tenant-key")
	})

	_, err = b.relay(t, nil).Drain(ctx)
	require.ErrorIs(t, err, outbox.ErrAmbiguousTable)
	require.ErrorContains(t, err, "public, tenant")
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = b.relay(t, nil).Run(rctx)
	require.ErrorIs(t, err, outbox.ErrAmbiguousTable, "Run refuses at once, not after a timeout")
	require.NoError(t, rctx.Err())

	r := b.relay(t, func(c *outbox.RelayConfig) { c.Outbox.Schema = "tenant" })
	n, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, 1, b.queuedKeys(t, "invalidator-standard")["tenant-key"])
}
