package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/outbox"
)

// The ways of running the outbox scenario's transaction.
const (
	// VariantAlone is the UPDATE transaction with no invalidation.
	VariantAlone = "alone"
	// VariantOutbox adds one outbox write (Writer.DeleteKeys of one key)
	// the recommended pgx way: the transaction is begun with
	// outbox.BeginPgx, and the write, queued, rides the COMMIT's round
	// trip.
	VariantOutbox = "outbox"
	// VariantOutboxStatement adds the same write as a statement of its own
	// (outbox.Pgx(tx) on the pool's transaction): one round trip more.
	// Before the write could ride the COMMIT this was VariantOutbox.
	VariantOutboxStatement = "outbox_statement"
	// VariantEnqueueAfterCommit enqueues the key's deletion after the
	// commit (enqueue.Client.DeleteKeys), today's dual write.
	VariantEnqueueAfterCommit = "enqueue_after_commit"
	// VariantOutboxNoNotify is a diagnostic: the outbox row's INSERT alone,
	// without the pg_notify the Writer sends with it. Its difference to
	// VariantOutbox is what the notification costs, which is most of it
	// at 8 goroutines on a durable server: PostgreSQL serializes the
	// commits of notifying transactions, fsync included.
	VariantOutboxNoNotify = "outbox_no_notify"
	// VariantOutboxBatched queues the outbox write into the same pgx.Batch
	// as the UPDATE (outbox.PgxBatch), so the write rides the UPDATE's
	// round trip instead of taking one of its own.
	VariantOutboxBatched = "outbox_batched"
	// VariantRoundTrip is a diagnostic: a bare SELECT sent on its own after
	// the UPDATE. What it adds is one round trip to the server, the floor
	// of any statement sent alone, the outbox write's as its own statement
	// included.
	VariantRoundTrip = "round_trip"
)

// The goroutine counts the outbox scenario's transactions run at.
const (
	outboxLow  = 1
	outboxHigh = 8
)

// DefaultOutboxPollInterval is the worker poll interval of the outbox
// scenario when Env.PollInterval is 0: the worker's fastest sensible
// setting, so the lag shows the relay rather than the worker's idle poll.
const DefaultOutboxPollInterval = time.Millisecond

// OutboxOptions configures Outbox.
type OutboxOptions struct {
	// DB is the PostgreSQL the transactions run on. Required; it needs room
	// for 8 connections plus the relay's two. The scenario creates its own
	// tables, invalidator_bench_<run> and invalidator_bench_<run>_outbox
	// (with its _migrations), and drops them at the end.
	DB *pgxpool.Pool
	// Tx is the transactions of each variant at each concurrency, spread
	// over Rounds. Default 3000.
	Tx int
	// Rounds is how many rounds the transactions are spread over: at 1
	// goroutine each round interleaves the variants transaction by
	// transaction, at 8 it runs them in blocks whose order rotates every
	// round, so machine noise hits them equally. Default 6.
	Rounds int
	// LagRate is the outbox transactions per second of the lag phase.
	// Default 1000.
	LagRate int
	// LagDuration is how long the lag phase sends. Default 5s.
	LagDuration time.Duration
	// RelayRows is the single-key rows pre-filled for the relay's
	// throughput. Default 50,000.
	RelayRows int
}

func (o *OutboxOptions) withDefaults() {
	if o.Tx <= 0 {
		o.Tx = 3000
	}
	if o.Rounds <= 0 {
		o.Rounds = 6
	}
	o.Rounds = min(o.Rounds, o.Tx)
	if o.LagRate <= 0 {
		o.LagRate = 1000
	}
	if o.LagDuration <= 0 {
		o.LagDuration = 5 * time.Second
	}
	if o.RelayRows <= 0 {
		o.RelayRows = 50000
	}
}

// relayConns bounds the relay's pool: a round's connection and the depth
// sampler's, and one spare.
const relayConns = 3

// outboxRowsPerWorker are the scratch rows each goroutine updates, its own,
// so the transactions never wait on each other's row locks.
const outboxRowsPerWorker = 1000

// outboxBench is one run of the outbox scenario.
type outboxBench struct {
	e         Env
	o         OutboxOptions
	run       string
	scratch   string // quoted scratch table
	outboxCfg outbox.Config
	update    string
	w         *outbox.Writer
	builder   *enqueue.Builder
	insert    string // the Writer's row without its pg_notify
	inv       *enqueue.Client
	keys      []string // the cost phase's key of each scratch row
	// relayDB is the relays' pool: DB's settings, connections of its own.
	relayDB *pgxpool.Pool
}

// Outbox measures what the transactional outbox costs and how fast it
// delivers, in one run:
//
//   - cost: the same small UPDATE transaction alone, with one outbox write
//     (riding the COMMIT, its own statement, or queued in the UPDATE's
//     batch), and with an enqueue after its commit (and, as diagnostics,
//     with the outbox row but no notification, and with a bare SELECT: one
//     round trip), at 1 and at 8 goroutines, the variants interleaved (see
//     cost); µs per transaction is the goroutines' busy time over the
//     transactions (the mean latency a caller sees). No relay runs
//     meanwhile; the rows are deleted between rounds.
//   - lag: outbox transactions at LagRate per second with a relay and a
//     worker running; the time from each commit's return to its key's
//     deletion, seen through keyspace notifications.
//   - relay throughput: RelayRows single-key rows pre-filled (COPY), then
//     the time of one Relay.Drain, with no worker running.
func Outbox(ctx context.Context, e Env, o OutboxOptions) (*Result, error) {
	o.withDefaults()
	if o.DB == nil {
		return nil, errors.New("bench outbox: OutboxOptions.DB is nil (pass a pgxpool.Pool of a throwaway database)")
	}
	if e.Redis == nil {
		return nil, errors.New("bench: Env.Redis is nil")
	}
	if e.PollInterval == 0 {
		e.PollInterval = DefaultOutboxPollInterval
	}
	p, err := e.policy()
	if err != nil {
		return nil, err
	}
	b := &outboxBench{e: e, o: o, run: runID()}
	table := "invalidator_bench_" + b.run
	b.scratch = pgx.Identifier{table}.Sanitize()
	b.outboxCfg = outbox.Config{Table: table + "_outbox"}
	b.update = "UPDATE " + b.scratch + " SET v = v + 1 WHERE id = $1"
	builder := enqueue.NewBuilder(enqueue.Config{Policy: p})
	b.builder = builder
	b.insert = "INSERT INTO " + pgx.Identifier{b.outboxCfg.Table}.Sanitize() +
		" (kind, payload, queue, max_retry, timeout_ms) VALUES ($1, $2, $3, $4, $5)"
	if b.w, err = outbox.NewWriter(builder, b.outboxCfg); err != nil {
		return nil, err
	}
	if b.inv, err = enqueue.New(e.Redis, enqueue.Config{Policy: p}); err != nil {
		return nil, err
	}
	defer b.inv.Close()
	if err := b.openRelayDB(ctx); err != nil {
		return nil, err
	}
	defer b.relayDB.Close()
	defer b.cleanup(context.WithoutCancel(ctx))
	if err := b.createTables(ctx); err != nil {
		return nil, err
	}

	res := &Result{Scenario: "outbox", Params: map[string]any{
		"tx": o.Tx, "rounds": o.Rounds, "goroutines": []int{outboxLow, outboxHigh},
		"lag_rate": o.LagRate, "lag_duration": o.LagDuration.String(), "relay_rows": o.RelayRows,
		"workers": e.Workers, "poll_interval": e.PollInterval.String(),
		"relay_batch_size": outbox.DefaultBatchSize, "lag_warmup": lagWarmup.String(),
	}}
	before, err := e.mark(ctx)
	if err != nil {
		return nil, err
	}
	if err := b.cost(ctx, res); err != nil {
		return nil, err
	}
	if err := b.lag(ctx, res); err != nil {
		return nil, err
	}
	if err := b.relayThroughput(ctx, res, builder); err != nil {
		return nil, err
	}
	if res.RedisCPUSeconds, err = e.cpuSince(ctx, before); err != nil {
		return nil, err
	}
	return res, nil
}

// openRelayDB opens the relays' pool, DB's settings with connections of
// its own, as `invalidator relay` and `worker --outbox-dsn` have. On the
// producers' pool a round waited for a connection, or for a new server
// process when the producers held every one: the first round of the lag
// phase did so for hundreds of milliseconds on a loaded machine, which
// made the first samples' tail and, in a 5-second phase, its p99.
func (b *outboxBench) openRelayDB(ctx context.Context) error {
	cfg := b.o.DB.Config().Copy()
	cfg.MaxConns = relayConns
	var err error
	if b.relayDB, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return fmt.Errorf("bench outbox: the relay's pool: %w", err)
	}
	return nil
}

// createTables creates the scratch table, its rows and the outbox.
func (b *outboxBench) createTables(ctx context.Context) error {
	rows := outboxHigh * outboxRowsPerWorker
	if _, err := b.o.DB.Exec(ctx, "CREATE TABLE "+b.scratch+" (id integer PRIMARY KEY, v bigint NOT NULL)"); err != nil {
		return fmt.Errorf("bench outbox: create the scratch table: %w", err)
	}
	if _, err := b.o.DB.Exec(ctx, "INSERT INTO "+b.scratch+" SELECT g, 0 FROM generate_series(0, $1) g", rows-1); err != nil {
		return fmt.Errorf("bench outbox: fill the scratch table: %w", err)
	}
	if _, err := outbox.Migrate(ctx, b.o.DB, b.outboxCfg); err != nil {
		return fmt.Errorf("bench outbox: %w", err)
	}
	b.keys = make([]string, rows)
	for i := range b.keys {
		b.keys[i] = fmt.Sprintf("bench:%s:ob:%d", b.run, i)
	}
	return nil
}

// cleanup drops the scenario's tables and removes its keys and queue; best
// effort, the scenario's result stands without it.
func (b *outboxBench) cleanup(ctx context.Context) {
	for _, t := range []string{b.scratch, pgx.Identifier{b.outboxCfg.Table}.Sanitize(),
		pgx.Identifier{b.outboxCfg.Table + "_migrations"}.Sanitize(), pgx.Identifier{b.outboxCfg.Table + "_quarantine"}.Sanitize()} {
		_, _ = b.o.DB.Exec(ctx, "DROP TABLE IF EXISTS "+t)
	}
	_ = cleanup(ctx, b.e.Redis, "bench:"+b.run+":*")
	_ = deleteQueue(b.e.Redis, benchQueue)
}

// deleteQueue removes a queue and its tasks; a missing queue is fine.
func deleteQueue(rdb redis.UniversalClient, queue string) error {
	err := asynq.NewInspectorFromRedisClient(rdb).DeleteQueue(queue, true)
	if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
		return fmt.Errorf("delete queue %s: %w", queue, err)
	}
	return nil
}

// begin begins variant v's transaction on the bench's pool: an
// outbox.PgxTx for VariantOutbox, the pool's own otherwise. otx is where
// the variant's outbox write goes.
func (b *outboxBench) begin(ctx context.Context, v string) (tx pgx.Tx, otx outbox.Tx, err error) {
	if v == VariantOutbox {
		t, err := outbox.BeginPgx(ctx, b.o.DB, pgx.TxOptions{})
		if err != nil {
			return nil, nil, err
		}
		return t, t, nil
	}
	tx, err = b.o.DB.Begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	return tx, outbox.Pgx(tx), nil
}

// tx runs one transaction of variant v on scratch row id, invalidating key.
func (b *outboxBench) tx(ctx context.Context, v string, id int, key string) error {
	tx, otx, err := b.begin(ctx, v)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }() // a no-op after the commit
	if v == VariantOutboxBatched {
		batch := &pgx.Batch{}
		batch.Queue(b.update, id)
		if err := b.w.DeleteKeys(ctx, outbox.PgxBatch(batch), key); err != nil {
			return err
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("update and outbox write: %w", err)
		}
	} else if _, err := tx.Exec(ctx, b.update, id); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	switch v {
	case VariantRoundTrip:
		// With an argument, so it goes the extended protocol's way, as the
		// outbox INSERT does.
		if _, err := tx.Exec(ctx, "SELECT $1::integer", id); err != nil {
			return fmt.Errorf("select: %w", err)
		}
	case VariantOutbox, VariantOutboxStatement:
		if err := b.w.DeleteKeys(ctx, otx, key); err != nil {
			return err
		}
	case VariantOutboxNoNotify:
		msgs, err := b.builder.DeleteKeys(key)
		if err != nil {
			return err
		}
		m := msgs[0]
		if _, err := tx.Exec(ctx, b.insert, m.Kind, m.Payload, m.Queue, int32(m.MaxRetry), m.Timeout.Milliseconds()); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if v == VariantEnqueueAfterCommit {
		if _, err := b.inv.DeleteKeys(ctx, key); err != nil {
			return err
		}
	}
	return nil
}

// batch runs n transactions of variant v on g goroutines and returns their
// wall time.
func (b *outboxBench) batch(ctx context.Context, v string, g, n int) (time.Duration, error) {
	var next atomic.Int64
	errs := make([]error, g)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range g {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				id := w*outboxRowsPerWorker + i%outboxRowsPerWorker
				if err := b.tx(ctx, v, id, b.keys[id]); err != nil {
					errs[w] = fmt.Errorf("%s transaction: %w", v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	return elapsed, errors.Join(append(errs, ctx.Err())...)
}

// interleaved runs n transactions of each variant on one goroutine, the
// variants taking turns transaction by transaction, in a fresh random order
// every turn, and returns each variant's summed latency. Every variant sees
// the same moments of the machine, so the difference of two variants' means
// is not the drift of the commit's flush time between two stretches of a
// run, which decided the figure when the variants ran in blocks. The order
// is random because a fixed rotation gives each variant the same
// predecessor, and the predecessor matters: a transaction that follows the
// enqueue after a commit, whose Redis call leaves PostgreSQL idle a moment
// longer, took 100 µs more than the same transaction after another.
func (b *outboxBench) interleaved(ctx context.Context, variants []string, n int) (map[string]time.Duration, error) {
	busy := make(map[string]time.Duration, len(variants))
	for i := range n {
		for _, j := range rand.Perm(len(variants)) {
			v := variants[j]
			id := (i*len(variants) + j) % outboxRowsPerWorker
			start := time.Now()
			if err := b.tx(ctx, v, id, b.keys[id]); err != nil {
				return nil, fmt.Errorf("%s transaction: %w", v, err)
			}
			busy[v] += time.Since(start)
		}
	}
	return busy, ctx.Err()
}

// cost measures µs per transaction of each variant at both concurrencies:
// at 1 goroutine the variants take turns transaction by transaction; at 8
// the goroutines run one variant at a time, in blocks whose order rotates
// every round, since mixing them would make each variant's cost the mix's.
func (b *outboxBench) cost(ctx context.Context, res *Result) error {
	variants := []string{VariantAlone, VariantOutbox, VariantOutboxStatement, VariantOutboxBatched,
		VariantEnqueueAfterCommit, VariantOutboxNoNotify, VariantRoundTrip}
	// A warm-up, not counted: connections opened, statements prepared.
	for _, g := range []int{outboxLow, outboxHigh} {
		for _, v := range variants {
			if _, err := b.batch(ctx, v, g, 20*g); err != nil {
				return fmt.Errorf("bench outbox: warm-up: %w", err)
			}
		}
	}
	busy := map[string]time.Duration{}
	done := map[string]int{}
	// Per round, µs per transaction at 1 goroutine over the same
	// transaction alone: the outbox write riding the COMMIT, as its own
	// statement, and in the UPDATE's batch.
	var roundAdded, roundAddedStatement, roundAddedBatched []float64
	for r := range b.o.Rounds {
		perTx := map[string]float64{}
		n := b.o.Tx / b.o.Rounds
		if r < b.o.Tx%b.o.Rounds {
			n++
		}
		count := func(v string, g int, d time.Duration) {
			name := costName(v, g)
			busy[name] += d
			done[name] += n
			perTx[name] = float64(d.Nanoseconds()) / 1000 / float64(n)
		}
		if err := b.clearOutbox(ctx); err != nil {
			return err
		}
		low, err := b.interleaved(ctx, variants, n)
		if err != nil {
			return fmt.Errorf("bench outbox: %w", err)
		}
		for v, d := range low {
			count(v, outboxLow, d)
		}
		for i := range variants {
			v := variants[(i+r)%len(variants)] // rotate who goes first
			if err := b.clearOutbox(ctx); err != nil {
				return err
			}
			d, err := b.batch(ctx, v, outboxHigh, n)
			if err != nil {
				return fmt.Errorf("bench outbox: %w", err)
			}
			count(v, outboxHigh, d*outboxHigh)
		}
		alone := perTx[costName(VariantAlone, outboxLow)]
		roundAdded = append(roundAdded, perTx[costName(VariantOutbox, outboxLow)]-alone)
		roundAddedStatement = append(roundAddedStatement, perTx[costName(VariantOutboxStatement, outboxLow)]-alone)
		roundAddedBatched = append(roundAddedBatched, perTx[costName(VariantOutboxBatched, outboxLow)]-alone)
		b.e.progressf("outbox: cost round %d/%d done", r+1, b.o.Rounds)
	}
	if err := b.clearOutbox(ctx); err != nil {
		return err
	}
	// The cost phase's deleted rows are dead tuples that the relay's first
	// claims would wade through (one took 10-40 ms); a running outbox has
	// autovacuum for that.
	if _, err := b.o.DB.Exec(ctx, "VACUUM "+pgx.Identifier{b.outboxCfg.Table}.Sanitize()); err != nil {
		return fmt.Errorf("bench outbox: vacuum the outbox: %w", err)
	}
	slices.Sort(roundAdded)
	slices.Sort(roundAddedStatement)
	slices.Sort(roundAddedBatched)
	res.AddedUsPerTxRounds, res.AddedUsPerTxBatchedRounds = roundAdded, roundAddedBatched
	res.AddedUsPerTxStatementRounds = roundAddedStatement
	res.TxUsPerTx = make(map[string]float64, len(busy))
	for name, d := range busy {
		res.TxUsPerTx[name] = float64(d.Nanoseconds()) / 1000 / float64(done[name])
	}
	res.Baselines = make(map[string]float64, 2)
	res.Ratios = make(map[string]float64, 6)
	for _, g := range []int{outboxLow, outboxHigh} {
		alone := res.TxUsPerTx[costName(VariantAlone, g)]
		ob := res.TxUsPerTx[costName(VariantOutbox, g)]
		enq := res.TxUsPerTx[costName(VariantEnqueueAfterCommit, g)]
		st := res.TxUsPerTx[costName(VariantOutboxStatement, g)] - alone
		bt := res.TxUsPerTx[costName(VariantOutboxBatched, g)] - alone
		res.Ratios[costName("outbox_no_notify_vs_alone", g)] = res.TxUsPerTx[costName(VariantOutboxNoNotify, g)] / alone
		res.Baselines[costName("tx_per_s_alone", g)] = float64(g) * 1e6 / alone
		res.Ratios[costName("outbox_vs_alone", g)] = ob / alone
		res.Ratios[costName("enqueue_after_commit_vs_alone", g)] = enq / alone
		res.Ratios[costName("outbox_vs_enqueue_after_commit", g)] = ob / enq
		if g == outboxLow {
			res.AddedUsPerTx, res.AddedUsPerTxEnqueueAfterCommit = ob-alone, enq-alone
			res.AddedUsPerTxStatement, res.AddedUsPerTxBatched = st, bt
			res.RoundTripUs = res.TxUsPerTx[costName(VariantRoundTrip, g)] - alone
		} else {
			res.AddedUsPerTx8, res.AddedUsPerTxEnqueueAfterCommit8 = ob-alone, enq-alone
			res.AddedUsPerTxStatement8, res.AddedUsPerTxBatched8 = st, bt
		}
	}
	// The enqueued tasks of the cost phase are nobody's: drop them before
	// the worker starts.
	return deleteQueue(b.e.Redis, benchQueue)
}

func costName(v string, g int) string { return fmt.Sprintf("%s_%d", v, g) }

// clearOutbox deletes the rows the cost phase wrote, so every round starts
// on the same, empty outbox.
func (b *outboxBench) clearOutbox(ctx context.Context) error {
	if _, err := b.o.DB.Exec(ctx, "DELETE FROM "+pgx.Identifier{b.outboxCfg.Table}.Sanitize()); err != nil {
		return fmt.Errorf("bench outbox: clear the outbox: %w", err)
	}
	return nil
}

// relay returns a relay of the bench's outbox.
func (b *outboxBench) relay() (*outbox.Relay, error) {
	log := b.e.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return outbox.NewRelay(outbox.RelayConfig{Outbox: b.outboxCfg, DB: b.relayDB, Queue: b.e.Redis, Logger: log})
}

// lag sends outbox transactions at LagRate with a relay and a worker
// running, and measures commit -> key gone. Their write is the recommended
// one (VariantOutbox: it rides the COMMIT), so the lag is from the return of
// a commit that carried the row.
func (b *outboxBench) lag(ctx context.Context, res *Result) error {
	r, err := b.relay()
	if err != nil {
		return err
	}
	rctx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(rctx) }()
	defer func() { stopRelay(); <-relayDone }()

	rows := outboxHigh * outboxRowsPerWorker
	prefix := fmt.Sprintf("bench:%s:oblag:", b.run)
	lags, rate, err := rateLag(ctx, b.e, prefix, b.o.LagRate, b.o.LagDuration, func(ctx context.Context, i int) error {
		return b.tx(ctx, VariantOutbox, i%rows, prefix+strconv.Itoa(i))
	})
	if err != nil {
		return fmt.Errorf("bench outbox: lag: %w", err)
	}
	res.LagP50Ms, res.LagP90Ms, res.LagP99Ms, res.LagMaxMs = percentiles(lags)
	res.Params["lag_achieved_rate"] = rate
	return nil
}

// relayThroughput pre-fills single-key rows and times one Drain.
func (b *outboxBench) relayThroughput(ctx context.Context, res *Result, builder *enqueue.Builder) error {
	n := b.o.RelayRows
	b.e.progressf("outbox relay: pre-filling %d single-key rows", n)
	rows := make([][]any, n)
	for i := range rows {
		msgs, err := builder.DeleteKeys(fmt.Sprintf("bench:%s:obrelay:%d", b.run, i))
		if err != nil {
			return err
		}
		m := msgs[0]
		rows[i] = []any{m.Kind, m.Payload, m.Queue, int32(m.MaxRetry), m.Timeout.Milliseconds()}
	}
	if _, err := b.o.DB.CopyFrom(ctx, pgx.Identifier{b.outboxCfg.Table},
		[]string{"kind", "payload", "queue", "max_retry", "timeout_ms"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("bench outbox: pre-fill the outbox: %w", err)
	}
	r, err := b.relay()
	if err != nil {
		return err
	}
	start := time.Now()
	moved, err := r.Drain(ctx)
	elapsed := time.Since(start)
	if err != nil {
		return fmt.Errorf("bench outbox: relay drain: %w", err)
	}
	if moved != n {
		return fmt.Errorf("bench outbox: the relay moved %d rows, %d were written", moved, n)
	}
	res.Keys, res.Seconds = int64(n), elapsed.Seconds()
	res.KeysPerSec = float64(n) / res.Seconds
	res.RelayInvalidationsPerS = res.KeysPerSec
	// The queued tasks are nobody's.
	return deleteQueue(b.e.Redis, benchQueue)
}
