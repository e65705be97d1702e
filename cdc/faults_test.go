package cdc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cdc"
	"github.com/invalidator/invalidator/internal/pgtest"
)

// keyRange returns product:from .. product:to.
func keyRange(from, to int) []string {
	var keys []string
	for i := from; i <= to; i++ {
		keys = append(keys, fmt.Sprintf("product:%d", i))
	}
	return keys
}

func TestPostgresRestartLosesNothing(t *testing.T) {
	t.Parallel()
	srv := pgtest.NewServer(t)
	r := newRigOn(t, srv.NewDB(t))
	rd, _ := r.reader(t, nil)
	r.exec(t, "INSERT INTO products SELECT g, 'x' FROM generate_series(1, 50) g")
	r.waitKeys(t, keyRange(1, 50)...)

	srv.Restart(t)
	r.db.Pool.Reset()
	require.Eventually(t, rd.Active, 30*time.Second, 10*time.Millisecond, "the reader reconnects")
	r.exec(t, "INSERT INTO products SELECT g, 'x' FROM generate_series(51, 100) g")
	r.waitKeys(t, keyRange(1, 100)...)
}

func TestSecondReaderTakesOver(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	first, stopFirst := r.reader(t, nil)
	require.Eventually(t, first.Active, 30*time.Second, 10*time.Millisecond)
	second, _ := r.reader(t, nil)
	require.Eventually(t, func() bool { return second.Ready(t.Context()) == nil }, 30*time.Second, 10*time.Millisecond)
	require.False(t, second.Active(), "one reader per slot")

	r.exec(t, "INSERT INTO products SELECT g, 'x' FROM generate_series(1, 20) g")
	r.waitKeys(t, keyRange(1, 20)...)
	stopFirst()
	r.exec(t, "INSERT INTO products SELECT g, 'x' FROM generate_series(21, 40) g")
	require.Eventually(t, second.Active, 30*time.Second, 10*time.Millisecond, "the standby takes over")
	r.waitKeys(t, keyRange(1, 40)...)
}

// Not parallel: min-replicas-to-write is a setting of the whole test
// server, so it would refuse the writes of every other test's database too
// (TestTruncateInvalidatesEveryKeyOfTheTablesFamilies failed on its flush).
// A test that is not parallel runs before the parallel ones start.
func TestQueueOutageReplaysFromTheSlot(t *testing.T) {
	r := newRig(t)
	rd, _ := r.reader(t, nil)
	require.Eventually(t, rd.Active, 30*time.Second, 10*time.Millisecond)
	// A queue Redis that refuses writes: the reader must not confirm.
	require.NoError(t, r.queue.ConfigSet(t.Context(), "min-replicas-to-write", "1").Err())
	r.exec(t, "INSERT INTO products SELECT g, 'x' FROM generate_series(1, 30) g")
	require.Eventually(t, func() bool { return rd.Ready(t.Context()) != nil }, 30*time.Second, 10*time.Millisecond, "the enqueue fails")
	require.NoError(t, r.queue.ConfigSet(t.Context(), "min-replicas-to-write", "0").Err())
	r.waitKeys(t, keyRange(1, 30)...)
}

func TestClearErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	t.Run("wal_level", func(t *testing.T) {
		t.Parallel()
		db := pgtest.NewServer(t, "wal_level=replica").NewDB(t)
		conn, err := pgx.Connect(ctx, db.DSN)
		require.NoError(t, err)
		defer conn.Close(context.Background())
		_, err = db.Pool.Exec(ctx, testSchema)
		require.NoError(t, err)
		_, err = cdc.Setup(ctx, conn, cdc.Target{Policy: policy(t)})
		require.ErrorIs(t, err, cdc.ErrWALLevel)
		require.ErrorContains(t, err, "ALTER SYSTEM SET wal_level = logical")
	})

	t.Run("replication privilege", func(t *testing.T) {
		t.Parallel()
		r := newRig(t)
		r.exec(t, "CREATE ROLE "+r.db.Name+"_app LOGIN")
		t.Cleanup(func() { _, _ = r.db.Pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+r.db.Name+"_app") })
		cfg, err := pgx.ParseConfig(r.db.DSN)
		require.NoError(t, err)
		rd, err := cdc.NewReader(cdc.Config{
			DSN:  fmt.Sprintf("postgres://%s_app@%s:%d/%s?sslmode=disable", r.db.Name, cfg.Host, cfg.Port, r.db.Name),
			Slot: r.db.Name, Policy: r.policy, Queue: r.queue, StatsInterval: -1,
		})
		require.NoError(t, err)
		err = rd.Run(ctx)
		require.ErrorIs(t, err, cdc.ErrNoReplication)
		require.ErrorContains(t, err, "ALTER ROLE <role> REPLICATION")
	})

	t.Run("table missing from the publication", func(t *testing.T) {
		t.Parallel()
		r := newRig(t)
		r.exec(t, "ALTER PUBLICATION invalidator DROP TABLE prices")
		rd, err := cdc.NewReader(cdc.Config{DSN: r.db.DSN, Slot: r.db.Name, Policy: r.policy, Queue: r.queue, StatsInterval: -1})
		require.NoError(t, err)
		err = rd.Run(ctx)
		require.ErrorIs(t, err, cdc.ErrNotSetUp)
		require.ErrorContains(t, err, "ALTER PUBLICATION invalidator ADD TABLE public.prices")
	})

	t.Run("replica identity", func(t *testing.T) {
		t.Parallel()
		r := newRig(t)
		r.exec(t, "ALTER TABLE prices REPLICA IDENTITY DEFAULT")
		rd, err := cdc.NewReader(cdc.Config{DSN: r.db.DSN, Slot: r.db.Name, Policy: r.policy, Queue: r.queue, StatsInterval: -1})
		require.NoError(t, err)
		err = rd.Run(ctx)
		require.ErrorIs(t, err, cdc.ErrReplicaIdentity)
		require.ErrorContains(t, err, `ALTER TABLE "public"."prices" REPLICA IDENTITY FULL`)
	})
}
