package cdc_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cdc"
)

func TestInsertUpdateDeleteInvalidateThePolicysKeys(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.reader(t, nil)

	r.exec(t, "INSERT INTO products VALUES (1, 'a')")
	r.waitKeys(t, "product:1")
	r.clearQueue(t)
	r.exec(t, "UPDATE products SET name = 'b' WHERE id = 1")
	r.waitKeys(t, "product:1")
	r.clearQueue(t)
	r.exec(t, "DELETE FROM products WHERE id = 1")
	r.waitKeys(t, "product:1")
	r.clearQueue(t)

	r.exec(t, "INSERT INTO other VALUES (1)") // no table of the policy
	r.exec(t, "INSERT INTO prices VALUES (1, 7, 'EUR', 100)")
	r.waitKeys(t, "price:7:EUR")
	r.clearQueue(t)
	r.exec(t, "UPDATE prices SET amount = 200 WHERE id = 1")
	r.waitKeys(t, "price:7:EUR")
	r.clearQueue(t)
	r.exec(t, "DELETE FROM prices WHERE id = 1")
	r.waitKeys(t, "price:7:EUR")
}

func TestUpdateThatMovesARowInvalidatesOldAndNewKeys(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.exec(t, "INSERT INTO prices VALUES (1, 7, 'EUR', 100), (2, 9, 'USD', 5)")
	r.exec(t, "INSERT INTO products VALUES (3, 'a')")
	r.reader(t, nil)
	r.waitKeys(t, "price:7:EUR", "price:9:USD", "product:3")
	r.clearQueue(t)

	r.exec(t, "UPDATE prices SET product_id = 8 WHERE id = 1")
	r.waitKeys(t, "price:7:EUR", "price:8:EUR")
	r.clearQueue(t)
	r.exec(t, "UPDATE prices SET currency = 'GBP' WHERE id = 2")
	r.waitKeys(t, "price:9:USD", "price:9:GBP")
	r.clearQueue(t)
	// A primary key change: the key tuple gives the old id.
	r.exec(t, "UPDATE products SET id = 4 WHERE id = 3")
	r.waitKeys(t, "product:3", "product:4")
}

func TestRolledBackTransactionInvalidatesNothing(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.reader(t, nil)
	ctx := t.Context()
	tx, err := r.db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "INSERT INTO products VALUES (5, 'x'); UPDATE products SET name = 'y' WHERE id = 5")
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	// Committed after the rollback: once its key is queued, the stream
	// has passed the rolled-back work.
	r.exec(t, "INSERT INTO products VALUES (6, 'z')")
	r.waitKeys(t, "product:6")
}

func TestHundredThousandRowTransactionInBoundedMemory(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const rows, bound = 100_000, 1000
	var peak atomic.Int64
	rd, _ := r.reader(t, func(c *cdc.Config) { c.MaxPending = bound })
	cdc.SetAfterFlushOf(rd, func(_, p int) {
		for {
			old := peak.Load()
			if int64(p) <= old || peak.CompareAndSwap(old, int64(p)) {
				return
			}
		}
	})
	r.exec(t, fmt.Sprintf("INSERT INTO products SELECT g, 'x' FROM generate_series(1, %d) g", rows))
	want := make([]string, rows)
	for i := range want {
		want[i] = fmt.Sprintf("product:%d", i+1)
	}
	var got map[string]int
	require.Eventually(t, func() bool {
		got = r.keys(t)
		return len(got) >= rows
	}, 2*time.Minute, 100*time.Millisecond)
	require.Len(t, got, rows)
	// At least once: a reader that reconnects under load replays the
	// transaction from the last confirmed position, so a key may be queued
	// twice; none may be missing.
	for _, k := range want {
		require.GreaterOrEqual(t, got[k], 1, k)
	}
	require.LessOrEqual(t, peak.Load(), int64(bound), "events held at once")
	require.Positive(t, peak.Load())
}
