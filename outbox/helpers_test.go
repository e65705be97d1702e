package outbox_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/outbox"
	"github.com/invalidator/invalidator/tasks"
)

const testPolicy = `
version: 1
default_class: standard
classes:
  standard: {ttl: 10m, max_retry: 5, timeout: 20s}
  critical: {ttl: 1m, max_retry: 25, timeout: 5s, queue: prices}
families:
  price:
    template: "price:{sku}"
    class: critical
  feed:
    template: "feed:{user}"
    class: standard
    strategy: version
events:
  product.updated:
    attributes: [id]
    invalidates:
      - {family: price, params: {sku: id}}
`

// bundle is one test's outbox: a migrated private database, a queue Redis
// and a Writer.
type bundle struct {
	db     *pgtest.DB
	queue  redis.UniversalClient
	policy *keyspec.Policy
	cfg    outbox.Config
	w      *outbox.Writer
	insp   *asynq.Inspector
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return setupWith(t, outbox.Config{}, redistest.NewDB(t).Client)
}

// setupBench is setup for a benchmark.
func setupBench(b *testing.B) *bundle {
	b.Helper()
	return setupWith(b, outbox.Config{}, redistest.NewDB(b).Client)
}

func setupWith(t testing.TB, cfg outbox.Config, queue redis.UniversalClient) *bundle {
	t.Helper()
	db := pgtest.NewDB(t)
	policy, err := keyspec.Parse("policy.yaml", []byte(testPolicy))
	require.NoError(t, err)
	_, err = outbox.Migrate(context.Background(), db.Pool, cfg)
	require.NoError(t, err)
	_, err = db.Pool.Exec(context.Background(), `CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL)`)
	require.NoError(t, err)
	w, err := outbox.NewWriter(enqueue.NewBuilder(enqueue.Config{Policy: policy}), cfg)
	require.NoError(t, err)
	return &bundle{db: db, queue: queue, policy: policy, cfg: cfg, w: w, insp: asynq.NewInspectorFromRedisClient(queue)}
}

// writer returns a Writer of the bundle's outbox with opts.
func (b *bundle) writer(t testing.TB, opts ...outbox.WriterOption) *outbox.Writer {
	t.Helper()
	w, err := outbox.NewWriter(enqueue.NewBuilder(enqueue.Config{Policy: b.policy}), b.cfg, opts...)
	require.NoError(t, err)
	return w
}

// relay returns a relay of the bundle's outbox; mod adjusts its config.
func (b *bundle) relay(t testing.TB, mod func(*outbox.RelayConfig)) *outbox.Relay {
	t.Helper()
	cfg := outbox.RelayConfig{Outbox: b.cfg, DB: b.db.Pool, Queue: b.queue,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mod != nil {
		mod(&cfg)
	}
	r, err := outbox.NewRelay(cfg)
	require.NoError(t, err)
	return r
}

// inTx runs f in a transaction of the bundle's database and commits.
func (b *bundle) inTx(t *testing.T, f func(tx pgx.Tx) error) {
	t.Helper()
	ctx := context.Background()
	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	require.NoError(t, f(tx))
	require.NoError(t, tx.Commit(ctx))
}

// rows counts the outbox rows.
func (b *bundle) rows(t *testing.T) int {
	t.Helper()
	var n int
	table := pgx.Identifier{b.table()}
	if b.cfg.Schema != "" {
		table = pgx.Identifier{b.cfg.Schema, b.table()}
	}
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table.Sanitize()).Scan(&n))
	return n
}

func (b *bundle) table() string {
	if b.cfg.Table != "" {
		return b.cfg.Table
	}
	return outbox.DefaultTable
}

// queued returns the decoded pending tasks of queue.
func (b *bundle) queued(t *testing.T, queue string) []tasks.Task {
	t.Helper()
	var out []tasks.Task
	for page := 1; ; page++ {
		infos, err := b.insp.ListPendingTasks(queue, asynq.PageSize(1000), asynq.Page(page))
		if err != nil {
			require.ErrorIs(t, err, asynq.ErrQueueNotFound)
			return out
		}
		if len(infos) == 0 {
			return out
		}
		for _, ti := range infos {
			task, err := tasks.Unmarshal(ti.Type, ti.Payload)
			require.NoError(t, err)
			out = append(out, task)
		}
	}
}

// queuedKeys counts how often each key is in the pending key deletes of queue.
func (b *bundle) queuedKeys(t *testing.T, queue string) map[string]int {
	t.Helper()
	keys := map[string]int{}
	for _, task := range b.queued(t, queue) {
		if dk, ok := task.(tasks.DeleteKeys); ok {
			for _, k := range dk.Keys {
				keys[k]++
			}
		}
	}
	return keys
}

// delayHook makes each Redis command take d longer while slow is set: a
// queue Redis across a slow link.
type delayHook struct {
	slow *atomic.Bool
	d    time.Duration
}

func (h delayHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h delayHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.slow.Load() {
			time.Sleep(h.d)
		}
		return next(ctx, cmd)
	}
}

func (h delayHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.slow.Load() {
			time.Sleep(h.d)
		}
		return next(ctx, cmds)
	}
}
