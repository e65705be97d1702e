package outbox_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/outbox"
	"github.com/invalidator/invalidator/tasks"
)

// Rows no queue would take (hand-written: a tab for a queue passes the
// table's CHECK, asynq refuses it) sit at the head of every claim. They
// must not wedge the relay: they go to the quarantine table with their
// reason, and every row batched with or behind them is relayed once.
func TestRefusedRowsAreQuarantinedAndTheRestRelayed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	keys, err := tasks.Marshal(tasks.DeleteKeys{Keys: []string{"k"}})
	require.NoError(t, err)
	var bad []int64
	for _, row := range []struct {
		kind, queue string
		payload     []byte
	}{
		{tasks.KindDeleteKeys, "\t", keys},            // asynq refuses the queue
		{"invalidate:nope", "standard", keys},         // no worker knows the kind
		{tasks.KindDeleteKeys, "standard", []byte{0}}, // the codec refuses it
	} {
		var id int64
		require.NoError(t, b.db.Pool.QueryRow(ctx, `INSERT INTO invalidator_outbox (kind, payload, queue, max_retry, timeout_ms)
			VALUES ($1, $2, $3, 0, 0) RETURNING id`, row.kind, row.payload, row.queue).Scan(&id))
		bad = append(bad, id)
	}
	for i := range 4 {
		b.inTx(t, func(tx pgx.Tx) error { return b.w.DeleteKeys(ctx, outbox.Pgx(tx), fmt.Sprint("good", i)) })
	}
	m, err := outbox.NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	r := b.relay(t, func(c *outbox.RelayConfig) { c.BatchSize = 2; c.Metrics = m })
	n, err := r.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, 4, n, "rows relayed")
	got := b.queuedKeys(t, "invalidator-standard")
	for i := range 4 {
		require.Equal(t, 1, got[fmt.Sprint("good", i)], "good%d enqueued once (queued keys %v)", i, got)
	}
	require.Zero(t, b.rows(t))
	rows, err := b.db.Pool.Query(ctx, `SELECT id, reason FROM invalidator_outbox_quarantine ORDER BY id`)
	require.NoError(t, err)
	type q struct {
		ID     int64
		Reason string
	}
	qs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[q])
	require.NoError(t, err)
	require.Len(t, qs, 3)
	for i, want := range []string{"blank queue", `unknown kind "invalidate:nope"`, "payload: "} {
		require.Equal(t, bad[i], qs[i].ID)
		require.Contains(t, qs[i].Reason, want)
	}
	require.Equal(t, 3.0, testutil.ToFloat64(m.Quarantined()))
}

// A timeout_ms past what a time.Duration holds in ms (or a negative
// max_retry) is quarantined too, for a table whose CHECKs were loosened or
// never validated.
func TestOutOfRangeRowsAreQuarantined(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	_, err := b.db.Pool.Exec(ctx, `ALTER TABLE invalidator_outbox DROP CONSTRAINT timeout_ms_bounded`)
	require.NoError(t, err)
	keys, err := tasks.Marshal(tasks.DeleteKeys{Keys: []string{"k"}})
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `INSERT INTO invalidator_outbox (kind, payload, queue, max_retry, timeout_ms)
		VALUES ($1, $2, 'standard', 0, 9223372036854775807)`, tasks.KindDeleteKeys, keys)
	require.NoError(t, err)
	_, err = b.relay(t, nil).Drain(ctx)
	require.NoError(t, err)
	var reason string
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT reason FROM invalidator_outbox_quarantine`).Scan(&reason))
	require.Contains(t, reason, "timeout_ms 9223372036854775807 out of range")
}

// The table refuses a blank queue or kind, and a huge timeout, at the write.
func TestTableRefusesBlankQueueAndKind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	for _, v := range []string{
		`('invalidate:keys', '\x00', ' ', 0, 0)`,
		`('  ', '\x00', 'standard', 0, 0)`,
		`('invalidate:keys', '\x00', 'standard', 0, 2147483649)`,
	} {
		_, err := b.db.Pool.Exec(ctx, `INSERT INTO invalidator_outbox (kind, payload, queue, max_retry, timeout_ms) VALUES `+v)
		require.ErrorContains(t, err, "violates check constraint", v)
	}
}
