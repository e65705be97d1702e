package cdc_test

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cdc"
	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

const testPolicy = `
version: 1
classes:
  standard: {ttl: 10m}
families:
  product: {template: "product:{id}", class: standard}
  price: {template: "price:{sku}:{currency}", class: standard}
events:
  product.updated: {attributes: [id], invalidates: [product]}
  price.changed: {attributes: [sku, currency], invalidates: [price]}
tables:
  public.products: {event: product.updated, attributes: {id: id}}
  public.prices: {event: price.changed, attributes: {sku: product_id, currency: currency}}
`

const testSchema = `
CREATE TABLE products (id int PRIMARY KEY, name text);
CREATE TABLE prices (id int PRIMARY KEY, product_id int NOT NULL, currency text NOT NULL, amount int NOT NULL);
ALTER TABLE prices REPLICA IDENTITY FULL;
CREATE TABLE other (id int PRIMARY KEY);
`

// rig is one test's database, set up for cdc with a slot named as the
// database (slots are the server's, not a database's), and queue Redis.
type rig struct {
	db     *pgtest.DB
	queue  redis.UniversalClient
	policy *keyspec.Policy
	insp   *asynq.Inspector
	qname  string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	return newRigOn(t, pgtest.NewDB(t))
}

func newRigOn(t *testing.T, db *pgtest.DB) *rig {
	t.Helper()
	ctx := t.Context()
	policy := policy(t)
	_, err := db.Pool.Exec(ctx, testSchema)
	require.NoError(t, err)
	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	res, err := cdc.Setup(ctx, conn.Conn(), cdc.Target{Policy: policy, Slot: db.Name})
	require.NoError(t, err)
	require.True(t, res.SlotCreated)
	t.Cleanup(func() {
		// The slot would hold the test database (DROP DATABASE refuses a
		// database with a slot) and WAL.
		// A stopped reader's walsender lets go of the slot soon after
		// its connection closes.
		deadline := time.Now().Add(30 * time.Second)
		for {
			var left int
			err := db.Pool.QueryRow(context.Background(), `WITH d AS (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
				WHERE database = current_database() AND NOT active) SELECT (SELECT count(*) FROM d) * 0 +
				(SELECT count(*) FROM pg_replication_slots WHERE database = current_database() AND active)`).Scan(&left)
			if err == nil && left == 0 || time.Now().After(deadline) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	queue := redistest.NewDB(t).Client
	return &rig{db: db, queue: queue, policy: policy, insp: asynq.NewInspectorFromRedisClient(queue),
		qname: policy.Classes["standard"].Queue}
}

// reader returns a started Reader; mod adjusts its config. It stops at
// cleanup, or when the returned stop is called.
func (r *rig) reader(t *testing.T, mod func(*cdc.Config)) (rd *cdc.Reader, stop func()) {
	t.Helper()
	cfg := cdc.Config{DSN: r.db.DSN, Slot: r.db.Name, Policy: r.policy, Queue: r.queue, StatsInterval: -1,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, TakeoverInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mod != nil {
		mod(&cfg)
	}
	rd, err := cdc.NewReader(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rd.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return rd, stop
}

func (r *rig) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := r.db.Pool.Exec(t.Context(), sql, args...)
	require.NoError(t, err)
}

// keys returns the keys the queued event tasks invalidate, with how many
// tasks name each.
func (r *rig) keys(t *testing.T) map[string]int {
	t.Helper()
	keys := map[string]int{}
	for page := 1; ; page++ {
		infos, err := r.insp.ListPendingTasks(r.qname, asynq.PageSize(5000), asynq.Page(page))
		if err != nil {
			require.ErrorIs(t, err, asynq.ErrQueueNotFound)
			return keys
		}
		if len(infos) == 0 {
			return keys
		}
		for _, ti := range infos {
			task, err := tasks.Unmarshal(ti.Type, ti.Payload)
			require.NoError(t, err)
			if dk, ok := task.(tasks.DeleteKeys); ok {
				for _, k := range dk.Keys {
					keys[k]++
				}
				continue
			}
			ev, ok := task.(tasks.Event)
			require.True(t, ok, "a %s task", ti.Type)
			actions, refused, err := r.policy.Resolve(ev.Name, ev.Attrs)
			require.NoError(t, err)
			require.Empty(t, refused)
			for _, a := range actions {
				keys[a.Key]++
			}
		}
	}
}

// waitKeys waits until the queued tasks name every key of want, then
// requires that they name no other.
func (r *rig) waitKeys(t *testing.T, want ...string) {
	t.Helper()
	var got map[string]int
	require.Eventually(t, func() bool {
		got = r.keys(t)
		for _, k := range want {
			if got[k] == 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "want keys %v", want)
	require.ElementsMatch(t, want, slices.Collect(maps.Keys(got)))
}

// clearQueue deletes the queued tasks.
func (r *rig) clearQueue(t *testing.T) {
	t.Helper()
	_, err := r.insp.DeleteAllPendingTasks(r.qname)
	if err != nil {
		require.ErrorIs(t, err, asynq.ErrQueueNotFound)
	}
}

func policy(t *testing.T) *keyspec.Policy { return policyF(t) }

func policyF(t testing.TB) *keyspec.Policy {
	t.Helper()
	p, err := keyspec.Parse("policy.yaml", []byte(testPolicy))
	require.NoError(t, err)
	return p
}
