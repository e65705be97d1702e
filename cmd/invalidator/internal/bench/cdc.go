package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invalidator/invalidator/cdc"
	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/outbox"
)

// CDCOptions configures CDC.
type CDCOptions struct {
	// DB is the PostgreSQL the transactions run on, with wal_level=logical
	// and a role that may create publications and slots. Required.
	DB *pgxpool.Pool
	// DSN is DB's connection string, for the reader's replication
	// connection. Required.
	DSN string
	// Changes is the row changes pre-written (in transactions of 1000 rows)
	// for the throughput phase. Default 100,000.
	Changes int
	// LagRate is the single-row transactions per second of the lag phases.
	// Default 1000.
	LagRate int
	// LagDuration is how long each lag phase sends. Default 5s.
	LagDuration time.Duration
	// RelayRows is the outbox relay's pre-filled rows. Default 50,000.
	RelayRows int
}

func (o *CDCOptions) withDefaults() {
	if o.Changes <= 0 {
		o.Changes = 100000
	}
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

// cdcTxRows is the rows of one transaction of the throughput phase.
const cdcTxRows = 1000

// CDC measures invalidator cdc next to the outbox, in one run:
//
//   - cdc throughput: Changes row inserts committed (1000 a transaction)
//     while no reader runs, then a reader started on the slot: row changes
//     per second from its start until the tasks of every change's event are
//     on the queue (merged into key deletes, as the reader enqueues them).
//   - cdc lag: single-row transactions at LagRate with a reader and a
//     worker running: commit -> key gone.
//   - outbox lag and relay throughput, as bench outbox measures them, on
//     the same servers, right after.
//
// It creates a table, publication and slot named invalidator_bench_<run>
// and drops them at the end.
func CDC(ctx context.Context, e Env, o CDCOptions) (*Result, error) {
	o.withDefaults()
	if o.DB == nil || o.DSN == "" {
		return nil, errors.New("bench cdc: CDCOptions.DB and DSN are required (a throwaway database with wal_level=logical)")
	}
	if e.Redis == nil {
		return nil, errors.New("bench: Env.Redis is nil")
	}
	if e.PollInterval == 0 {
		e.PollInterval = DefaultOutboxPollInterval
	}
	run := runID()
	name := "invalidator_bench_" + run
	table := pgx.Identifier{name}.Sanitize()
	p, err := keyspec.Parse("bench-cdc-policy.yaml", []byte(policyYAML(e.Shards)+"tables:\n  public."+name+
		": {event: bench.row_changed, attributes: {run: run, group: grp, id: id}}\n"))
	if err != nil {
		return nil, err
	}
	target := cdc.Target{Policy: p, Slot: name, Publication: name}
	if _, err := o.DB.Exec(ctx, "CREATE TABLE "+table+" (grp text NOT NULL, id int NOT NULL, run text NOT NULL, v int NOT NULL DEFAULT 0, PRIMARY KEY (grp, id)); ALTER TABLE "+table+" REPLICA IDENTITY FULL"); err != nil {
		return nil, fmt.Errorf("bench cdc: create the table: %w", err)
	}
	defer func() {
		ctx := context.WithoutCancel(ctx)
		if c, err := o.DB.Acquire(ctx); err == nil {
			_, _, _ = cdc.Teardown(ctx, c.Conn(), target)
			c.Release()
		}
		_, _ = o.DB.Exec(ctx, "DROP TABLE IF EXISTS "+table)
		_ = cleanup(ctx, e.Redis, "bench:"+run+":*")
		_ = deleteQueue(e.Redis, benchQueue)
	}()
	conn, err := o.DB.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	_, err = cdc.Setup(ctx, conn.Conn(), target)
	conn.Release()
	if err != nil {
		return nil, fmt.Errorf("bench cdc: %w", err)
	}
	log := e.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	newReader := func() (*cdc.Reader, error) {
		return cdc.NewReader(cdc.Config{DSN: o.DSN, Policy: p, Queue: e.Redis, Slot: name, Publication: name,
			StatsInterval: -1, Logger: log})
	}
	start := func(r *cdc.Reader) func() {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		return func() { cancel(); <-done }
	}

	res := &Result{Scenario: "cdc", Params: map[string]any{
		"changes": o.Changes, "tx_rows": cdcTxRows, "lag_rate": o.LagRate, "lag_duration": o.LagDuration.String(), "lag_warmup": lagWarmup.String(),
		"relay_rows": o.RelayRows, "workers": e.Workers, "poll_interval": e.PollInterval.String(),
		"max_pending": cdc.DefaultMaxPending, "flush_wait": cdc.DefaultFlushWait.String(),
	}, Baselines: map[string]float64{}, Ratios: map[string]float64{}}
	before, err := e.mark(ctx)
	if err != nil {
		return nil, err
	}

	// Throughput: the changes wait in the slot, then one reader drains them.
	e.progressf("cdc: committing %d row changes", o.Changes)
	for lo := 0; lo < o.Changes; lo += cdcTxRows {
		hi := min(lo+cdcTxRows, o.Changes) - 1
		if _, err := o.DB.Exec(ctx, "INSERT INTO "+table+" (grp, id, run) SELECT 'tp', g, $1 FROM generate_series($2::int, $3::int) g", run, lo, hi); err != nil {
			return nil, fmt.Errorf("bench cdc: insert: %w", err)
		}
	}
	r, err := newReader()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	stop := start(r)
	for r.Published() < int64(o.Changes) {
		if time.Since(t0) > 5*time.Minute {
			stop()
			return nil, fmt.Errorf("bench cdc: the reader enqueued %d of %d changes' events within 5m", r.Published(), o.Changes)
		}
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(t0)
	stop()
	res.Keys, res.Seconds = int64(o.Changes), elapsed.Seconds()
	res.KeysPerSec = float64(o.Changes) / res.Seconds
	res.CDCChangesPerS = res.KeysPerSec
	if err := deleteQueue(e.Redis, benchQueue); err != nil {
		return nil, err
	}

	// Lag: a reader and a worker running, single-row transactions.
	r, err = newReader()
	if err != nil {
		return nil, err
	}
	stop = start(r)
	// A new reader's walsender decodes the WAL from the slot's restart
	// point again, the throughput phase's included, before it sends
	// anything new: wait until a marker row arrives, so the lag phase
	// measures the steady state, not that start.
	if _, err := o.DB.Exec(ctx, "INSERT INTO "+table+" (grp, id, run) VALUES ('warm', 0, $1)", run); err != nil {
		stop()
		return nil, fmt.Errorf("bench cdc: insert: %w", err)
	}
	warm := time.Now()
	for r.Published() < 1 {
		if time.Since(warm) > 5*time.Minute {
			stop()
			return nil, errors.New("bench cdc: a new reader did not catch up within 5m")
		}
		time.Sleep(time.Millisecond)
	}
	res.Params["reader_catch_up"] = time.Since(warm).Round(time.Millisecond).String()
	lags, rate, err := rateLag(ctx, e, fmt.Sprintf("bench:%s:item:cdclag:", run), o.LagRate, o.LagDuration, func(ctx context.Context, i int) error {
		_, err := o.DB.Exec(ctx, "INSERT INTO "+table+" (grp, id, run) VALUES ('cdclag', $1, $2)", i, run)
		return err
	})
	stop()
	if err != nil {
		return nil, fmt.Errorf("bench cdc: lag: %w", err)
	}
	res.LagP50Ms, res.LagP90Ms, res.LagP99Ms, res.LagMaxMs = percentiles(lags)
	res.Params["lag_achieved_rate"] = rate

	// The outbox, measured the same way on the same servers.
	ob := &outboxBench{e: e, o: OutboxOptions{DB: o.DB, LagRate: o.LagRate, LagDuration: o.LagDuration, RelayRows: o.RelayRows}, run: run}
	if err := ob.init(ctx); err != nil {
		return nil, err
	}
	defer ob.cleanup(context.WithoutCancel(ctx))
	if err := ob.openRelayDB(ctx); err != nil {
		return nil, err
	}
	defer ob.relayDB.Close()
	obRes := &Result{Params: map[string]any{}}
	if err := ob.lag(ctx, obRes); err != nil {
		return nil, err
	}
	if err := ob.relayThroughput(ctx, obRes, ob.builder); err != nil {
		return nil, err
	}
	res.OutboxLagP50Ms, res.OutboxLagP99Ms = obRes.LagP50Ms, obRes.LagP99Ms
	res.RelayInvalidationsPerS = obRes.RelayInvalidationsPerS
	res.Baselines["outbox_relay_rows_per_s"] = obRes.RelayInvalidationsPerS
	res.Ratios["cdc_vs_outbox_relay"] = res.CDCChangesPerS / obRes.RelayInvalidationsPerS
	if res.RedisCPUSeconds, err = e.cpuSince(ctx, before); err != nil {
		return nil, err
	}
	return res, nil
}

// lagWarmup is how long rateLag commits at its rate before the measured
// phase. Why: what the lag phases measure is a running pipeline's, and the
// first commits after the workers and relay start found cold pools, a cold
// claim index and unscheduled goroutines: on a quiet machine they made one
// 30-120 ms stall at the start of every phase, which a 5 s phase's p99
// could not hide and a 15 s phase's could. A process's start is not its
// steady state; its catch-up is measured by the fault tests instead.
const lagWarmup = 500 * time.Millisecond

// rateLag runs commit(i) at rate per second for d from 8 goroutines (enough
// that a slow commit does not delay the schedule), with workers running,
// and returns each commit's return -> key gone, where commit i invalidates
// key prefix+i. The first lagWarmup of commits, at the same rate, are
// not measured.
func rateLag(ctx context.Context, e Env, prefix string, rate int, d time.Duration, commit func(context.Context, int) error) ([]time.Duration, float64, error) {
	n := int(float64(rate) * d.Seconds())
	warm := int(float64(rate) * lagWarmup.Seconds())
	total := warm + n
	_, stopWorkers, err := e.setup(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer stopWorkers()
	key := func(i int) string { return fmt.Sprintf("%s%d", prefix, i) }
	if err := fill(ctx, e.Redis, total, key); err != nil {
		return nil, 0, err
	}
	watch, err := watchDeletes(ctx, e.Redis, prefix, total)
	if err != nil {
		return nil, 0, err
	}
	defer watch.close()
	committed := make([]time.Time, total)
	errs := make([]error, outboxHigh)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := range outboxHigh {
		wg.Go(func() {
			for i := range next {
				if err := commit(ctx, i); err != nil && errs[w] == nil {
					errs[w] = err
				}
				committed[i] = time.Now()
			}
		})
	}
	start := time.Now()
	var measured time.Time // when the first measured commit was due
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := range total {
		due := start.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if i == warm {
			measured = due
		}
		select {
		case <-tick.C:
			e.progressf("lag %s: %d/%d committed (%d of them warm-up), %d gone", prefix, i, total, warm, watch.count())
		default:
		}
		next <- i
	}
	close(next)
	wg.Wait()
	sendTime := time.Since(measured)
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	if err := watch.wait(ctx, 30*time.Second, "last commit"); err != nil {
		return nil, 0, err
	}
	lags := make([]time.Duration, n)
	for i := range n {
		lags[i] = watch.at(key(warm + i)).Sub(committed[warm+i])
	}
	return lags, float64(n) / sendTime.Seconds(), nil
}

// init prepares an outbox bench run whose run id is set: the writer,
// builder, client and tables.
func (b *outboxBench) init(ctx context.Context) error {
	p, err := b.e.policy()
	if err != nil {
		return err
	}
	table := "invalidator_bench_" + b.run + "_ob"
	b.scratch = pgx.Identifier{table}.Sanitize()
	b.outboxCfg = outbox.Config{Table: table + "_outbox"}
	b.update = "UPDATE " + b.scratch + " SET v = v + 1 WHERE id = $1"
	b.builder = enqueue.NewBuilder(enqueue.Config{Policy: p})
	if b.w, err = outbox.NewWriter(b.builder, b.outboxCfg); err != nil {
		return err
	}
	return b.createTables(ctx)
}
