package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/tasks"
)

// Defaults of RelayConfig fields left zero.
const (
	DefaultBatchSize     = 1000
	DefaultPollInterval  = time.Second
	DefaultStatsInterval = 5 * time.Second
	DefaultRetryMin      = 100 * time.Millisecond
	DefaultRetryMax      = 2 * time.Second
	DefaultRoundTimeout  = 30 * time.Second
	DefaultBusyPoll      = time.Millisecond
)

// RelayConfig configures a Relay. Zero values take the documented defaults.
type RelayConfig struct {
	// Outbox names the table, as the Writers name it.
	Outbox Config
	// DB is the application's database, where the outbox table lives.
	// Required. The relay uses one pool connection per round, plus one
	// connection of its own (same settings) for LISTEN. Give it a pool of
	// its own (as `invalidator relay` and `worker --outbox-dsn` do), or
	// one with connections to spare: a round first waits for a
	// connection, and on a pool the application's transactions hold, for
	// a new server process, all of which adds to the commit -> key gone
	// lag.
	DB *pgxpool.Pool
	// Queue is the queue Redis the tasks go to. Required.
	Queue redis.UniversalClient

	// BusyPoll is the wait after a round that moved rows but not a full
	// batch (a full batch is followed at once by the next round), and
	// after a notification; it doubles per empty round up to
	// PollInterval. It bounds what waiting adds to the lag of rows that
	// trickle in, and gathers them into fewer rounds. Default: 1ms.
	BusyPoll time.Duration
	// BatchSize is the most rows one round takes. Default: 1000.
	BatchSize int
	// PollInterval is the safety poll: how long an idle relay waits for a
	// notification before it looks at the table anyway (a notification can
	// be missed while the LISTEN connection is down, and Writers skip it
	// for rows that follow a notifying write closely, see
	// WithNotifyInterval). After a round that moved rows the relay polls
	// again after BusyPoll, the wait doubling per empty round up to
	// PollInterval. Each poll is one indexed query. Default: 1s.
	PollInterval time.Duration
	// StatsInterval is how often the relay samples the outbox depth and the
	// oldest row's age for its metrics; negative turns sampling off. Each
	// sample counts the table's rows. Default: 5s.
	StatsInterval time.Duration
	// RetryMin and RetryMax bound the wait after a failed round (queue
	// Redis or database down); it doubles per failure, with jitter.
	// Defaults: 100ms and 2s.
	RetryMin, RetryMax time.Duration
	// RoundTimeout bounds one round: claim, enqueue, commit. A round cut
	// short is rolled back and its rows are sent again; after one, the
	// relay halves its batch (down to 1 row) so that a batch too big to
	// finish in time still drains, and doubles it back per successful
	// round up to BatchSize. Default: 30s.
	RoundTimeout time.Duration

	// Logger receives the relay's logs. Default: slog.Default().
	Logger *slog.Logger
	// Metrics receives its metrics (NewMetrics). Default: nil, none.
	Metrics *Metrics
}

func (cfg *RelayConfig) withDefaults() (RelayConfig, error) {
	c := *cfg
	if c.DB == nil {
		return c, fmt.Errorf("%w: relay: nil DB (pass the pgxpool.Pool of the database holding the outbox)", ErrConfig)
	}
	if c.Queue == nil {
		return c, fmt.Errorf("%w: relay: nil Queue (pass the queue Redis)", ErrConfig)
	}
	var err error
	if c.Outbox, err = c.Outbox.withDefaults(); err != nil {
		return c, err
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.BusyPoll <= 0 {
		c.BusyPoll = DefaultBusyPoll
	}
	c.BusyPoll = min(c.BusyPoll, c.PollInterval)
	if c.StatsInterval == 0 {
		c.StatsInterval = DefaultStatsInterval
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(DefaultRetryMax, c.RetryMin)
	}
	if c.RoundTimeout <= 0 {
		c.RoundTimeout = DefaultRoundTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Relay moves outbox rows to the asynq queues: at least once, in batches,
// woken by NOTIFY. Several relays, in one process or many, share one outbox
// safely. See the package documentation for the guarantees.
type Relay struct {
	cfg      RelayConfig
	q        *enqueue.Client
	log      *slog.Logger
	claimSQL string
	statsSQL string
	// quarantineSQL moves one refused row ($1..$8: id, created_at, kind,
	// payload, queue, max_retry, timeout_ms, reason).
	quarantineSQL string

	// afterEnqueue, when set (tests), runs after a round's tasks are
	// enqueued and before its commit.
	afterEnqueue func(ctx context.Context, tx pgx.Tx)
	// afterRound, when set (tests), runs in Run after each round with the
	// rows it took.
	afterRound func(rows int)

	// batch is the rows the next round claims: BatchSize, or less after
	// rounds that ran out of RoundTimeout.
	batch atomic.Int64
	// schemaChecked is set once checkSchema has passed (see there).
	schemaChecked atomic.Bool

	mu        sync.Mutex
	running   bool  // guarded by mu
	listenErr error // guarded by mu: why LISTEN is down; nil while listening
	listening bool  // guarded by mu
	roundErr  error // guarded by mu: the last round's failure; nil after a success
}

// NewRelay returns a Relay; Run starts it.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	q, err := enqueue.New(c.Queue, enqueue.Config{})
	if err != nil {
		return nil, err
	}
	t := c.Outbox.table()
	r := &Relay{
		cfg: c,
		q:   q,
		log: c.Logger.With("subsystem", "outbox-relay", "table", t),
		// SKIP LOCKED: concurrent relays take disjoint batches, and the
		// rows stay locked (invisible to the others) until this
		// transaction ends: deleted at commit, back at rollback or when the
		// relay's connection dies. = ANY(ARRAY(...)) makes the batch an
		// init plan, run once, and the delete an index lookup; with IN the
		// planner may join against a scan of the whole table, or rerun the
		// locking subquery per row. The age is on the database's clock.
		claimSQL: "DELETE FROM " + t + " WHERE id = ANY(ARRAY(SELECT id FROM " + t +
			" ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))" +
			" RETURNING id, created_at, kind, payload, queue, max_retry, timeout_ms," +
			" extract(epoch FROM clock_timestamp() - created_at)::float8",
		quarantineSQL: "INSERT INTO " + c.Outbox.quarantine() +
			" (id, created_at, kind, payload, queue, max_retry, timeout_ms, reason)" +
			" VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
		statsSQL: "SELECT (SELECT count(*) FROM " + t + ")," +
			" COALESCE((SELECT extract(epoch FROM clock_timestamp() - created_at)::float8 FROM " + t +
			" ORDER BY id LIMIT 1), 0)",
	}
	r.batch.Store(int64(c.BatchSize))
	return r, nil
}

// Run relays until ctx ends, then returns nil once the round in flight (if
// any) has finished. It listens for the writers' notifications on a
// connection of its own, and after each round that took a full batch goes
// straight on to the next, so a backlog drains at full speed. After a round
// that took fewer rows it waits BusyPoll (or a notification) first, so rows
// that trickle in gather into fewer rounds. Once a round comes back
// empty it polls again after BusyPoll, doubling the wait per empty round up
// to PollInterval (a notification resets it): while rows flow the relay
// finds them without notifications, which Writers send at most once per
// NotifyInterval, and an idle relay settles at one query per PollInterval
// within seconds. A failed round (queue Redis or
// database down) is retried after a growing wait; its rows stay in the
// table. Run may not be called again until it has returned.
func (r *Relay) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return errors.New("outbox relay: Run is already running")
	}
	r.running = true
	r.mu.Unlock()
	defer func() { // after the goroutines below have ended
		r.mu.Lock()
		r.running, r.listening = false, false
		r.mu.Unlock()
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake := make(chan struct{}, 1)
	wg.Go(func() { r.listen(ctx, wake) })
	if r.cfg.StatsInterval > 0 {
		wg.Go(func() { r.sample(ctx) })
	}

	// A table name that several schemas hold is refused at once: retrying
	// cannot fix it. Any other failure (PostgreSQL down) is a round's to
	// retry, which checks again.
	if err := r.checkSchema(ctx, r.cfg.DB); errors.Is(err, ErrAmbiguousTable) {
		return err
	} else if err == nil {
		r.schemaChecked.Store(true)
	}
	r.log.Info("outbox relay started", "channel", r.cfg.Outbox.Channel, "batch_size", r.cfg.BatchSize)
	timer := time.NewTimer(0)
	defer timer.Stop()
	retry := r.cfg.RetryMin
	poll := r.cfg.PollInterval // the next wait after an empty round
	for {
		full := int(r.batch.Load()) // the batch this round may take
		relayed, quarantined, err := r.round(ctx)
		n := relayed + quarantined
		if r.afterRound != nil {
			r.afterRound(n)
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := time.Duration(0)
		switch {
		case err != nil:
			r.log.Warn("outbox relay round failed; its rows stay and are retried", "error", err, "retry_in", retry)
			wait, retry = jitter(retry), min(2*retry, r.cfg.RetryMax)
		case n >= full:
			retry, poll = r.cfg.RetryMin, r.cfg.BusyPoll
			continue // a full batch: more rows may be waiting
		case n > 0:
			// The round took every row there was when it claimed, so what
			// it left are rows committed since, under one round old.
			// Waiting BusyPoll lets more of them gather for the next
			// round: going straight on ran a round, three round trips to
			// PostgreSQL and one to Redis, for about every row at 1,000
			// rows/s, and that CPU, on the machine the writers and the
			// workers share, made the lag's tail. A notification still
			// cuts the wait short.
			retry, poll = r.cfg.RetryMin, r.cfg.BusyPoll
			wait = r.cfg.BusyPoll
		default:
			retry = r.cfg.RetryMin
			wait, poll = poll, min(2*poll, r.cfg.PollInterval)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
			poll = r.cfg.BusyPoll
			if err != nil {
				// A notification does not cut a backoff short: the
				// failure is not the table's.
				select {
				case <-ctx.Done():
					return nil
				case <-timer.C:
				}
			}
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// jitter spreads a wait over [d/2, d), so relays that failed together do not
// retry together.
func jitter(d time.Duration) time.Duration {
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// Drain runs rounds until one finds no row, and returns the rows relayed.
// Run does this on every wake-up; Drain is for a one-shot relay (a cron
// job, a test, a shutdown hook).
func (r *Relay) Drain(ctx context.Context) (int, error) {
	total := 0
	for {
		n, q, err := r.round(ctx)
		total += n
		if err != nil || n+q == 0 {
			return total, err
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// Ready returns nil when the relay is running, listening for
// notifications, its last round succeeded and the database answers: the
// relay's /readyz check.
func (r *Relay) Ready(ctx context.Context) error {
	r.mu.Lock()
	running, listening, listenErr, roundErr := r.running, r.listening, r.listenErr, r.roundErr
	r.mu.Unlock()
	switch {
	case !running:
		return errors.New("outbox relay: not running")
	case roundErr != nil:
		return fmt.Errorf("outbox relay: last round failed: %w", roundErr)
	case !listening && listenErr != nil:
		return fmt.Errorf("outbox relay: not listening for notifications: %w", listenErr)
	case !listening:
		return errors.New("outbox relay: not listening for notifications yet")
	}
	return r.cfg.DB.Ping(ctx)
}

// round moves one batch: claim rows (DELETE ... RETURNING, uncommitted),
// move the ones no queue would take to the quarantine table, enqueue the
// others' tasks, merged, then commit. Any failure rolls back, so the rows
// stay for the next round; a task enqueued before the failure is sent again
// then (at least once). It returns the rows relayed and quarantined.
func (r *Relay) round(ctx context.Context) (relayed, quarantined int, err error) {
	batch := int(r.batch.Load())
	var timedOut bool
	relayed, quarantined, timedOut, err = r.roundUnrecorded(ctx, batch)
	switch {
	case timedOut && batch > 1:
		// Retried whole, a batch that cannot finish within RoundTimeout
		// would never drain, and would enqueue its tasks again each time.
		r.batch.Store(int64(batch / 2))
		r.log.Warn("outbox relay round ran out of its timeout; halving the batch",
			"round_timeout", r.cfg.RoundTimeout, "batch_size", batch/2)
	case err == nil && relayed+quarantined > 0 && batch < r.cfg.BatchSize:
		r.batch.Store(int64(min(2*batch, r.cfg.BatchSize)))
	}
	r.mu.Lock()
	r.roundErr = err
	r.mu.Unlock()
	return relayed, quarantined, err
}

// roundUnrecorded is round with a batch of batch rows; timedOut reports a
// failure because the round ran out of RoundTimeout.
func (r *Relay) roundUnrecorded(ctx context.Context, batch int) (relayed, quarantined int, timedOut bool, err error) {
	// The round finishes even if ctx ends meanwhile: rows cut short would
	// be sent twice. RoundTimeout bounds it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.RoundTimeout)
	defer cancel()
	relayed, quarantined, err = r.move(rctx, batch)
	return relayed, quarantined, err != nil && rctx.Err() != nil, err
}

// roundTx begins a round's transaction with synchronous_commit off for that
// transaction alone (SET LOCAL; one round trip: a simple-protocol query).
// Why: the round's commit otherwise waits for its WAL flush, which was most
// of a round's time, and every row committed meanwhile waited for the next
// round: it made most of the commit -> key gone tail, and a drain paid one
// flush per batch. What it gives up is harmless here: a database crash in
// the flush delay (wal_writer_delay, up to three times it) can undo the
// delete of rows whose tasks are already queued, so those rows are sent
// again, an invalidation repeated, which at-least-once allows. It never
// loses a row: the delete, not the insert, is what may be undone, and an
// enqueue failure still rolls back.
//
// It also plans the round's claim for the table as it is now
// (plan_cache_mode force_custom_plan, about 0.1 ms of planning). Why: the
// claim is a prepared statement, and an outbox is empty most of its life,
// so after five runs PostgreSQL kept a generic plan made for an empty
// table, sequential scans, which read the whole table per batch once rows
// piled up: the drain after a queue Redis outage went quadratic (14 k
// rows/s instead of 150 k at 50 k rows, slower the longer the outage).
var roundTx = pgx.TxOptions{BeginQuery: "BEGIN; SET LOCAL synchronous_commit = off; SET LOCAL plan_cache_mode = force_custom_plan"}

func (r *Relay) move(rctx context.Context, batch int) (int, int, error) {
	start := time.Now()
	tx, err := r.cfg.DB.BeginTx(rctx, roundTx)
	if err != nil {
		r.cfg.Metrics.failed(stageClaim)
		return 0, 0, fmt.Errorf("outbox relay: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(rctx)) }()

	if !r.schemaChecked.Load() {
		if err := r.checkSchema(rctx, tx); err != nil {
			r.cfg.Metrics.failed(stageClaim)
			return 0, 0, err
		}
		r.schemaChecked.Store(true)
	}
	msgs, ages, refused, err := r.claim(rctx, tx, batch)
	if err != nil {
		r.cfg.Metrics.failed(stageClaim)
		return 0, 0, err
	}
	if len(msgs)+len(refused) == 0 {
		return 0, 0, nil
	}
	// Before any Redis call: a row the queue refuses would fail the
	// round, and every round after it, with the whole batch.
	for _, q := range refused {
		if _, err := tx.Exec(rctx, r.quarantineSQL, q.id, q.createdAt, q.Kind, q.Payload, q.Queue,
			q.maxRetry, q.timeoutMS, q.reason); err != nil {
			r.cfg.Metrics.failed(stageQuarantine)
			return 0, 0, fmt.Errorf("outbox relay: quarantine row %d (%s): %w (the round's rows stay; is the outbox migrated?)",
				q.id, q.reason, err)
		}
	}
	claimed := time.Now()
	tasks := enqueue.Merge(msgs)
	if len(tasks) > 0 {
		if err := r.enqueueAll(rctx, tasks); err != nil {
			r.cfg.Metrics.failed(stageEnqueue)
			return 0, 0, fmt.Errorf("outbox relay: %w (the round's %d rows stay)", err, len(msgs))
		}
	}
	sent := time.Since(claimed).Seconds()
	if r.afterEnqueue != nil {
		r.afterEnqueue(rctx, tx)
	}
	if err := tx.Commit(rctx); err != nil {
		r.cfg.Metrics.failed(stageCommit)
		return 0, 0, fmt.Errorf("outbox relay: commit after enqueueing %d tasks (their %d rows stay and are sent again): %w",
			len(tasks), len(msgs), err)
	}
	for _, q := range refused {
		r.log.Error("outbox row quarantined: no queue would take its task; see README on re-driving it",
			"id", q.id, "reason", q.reason, "kind", q.Kind, "queue", q.Queue)
	}
	r.cfg.Metrics.quarantined(len(refused))
	if len(msgs) == 0 {
		return 0, len(refused), nil
	}
	for i := range ages {
		ages[i] += sent
	}
	r.cfg.Metrics.batch(len(msgs), len(tasks), time.Since(start).Seconds(), ages)
	r.log.Debug("outbox rows relayed", "rows", len(msgs), "tasks", len(tasks))
	return len(msgs), len(refused), nil
}

// enqueueAll enqueues a round's tasks, several at once (see
// enqueue.Client.EnqueueAll).
func (r *Relay) enqueueAll(ctx context.Context, tasks []enqueue.Message) error {
	return r.q.EnqueueAll(ctx, tasks)
}

// refusedRow is a claimed row that no queue would take, and why.
type refusedRow struct {
	enqueue.Message
	id        int64
	createdAt time.Time
	maxRetry  int32
	timeoutMS int64
	reason    string
}

// maxTimeoutMS bounds a row's timeout_ms: 2^31 ms (24.8 days) is far past
// any sane task timeout, and far below the overflow of a time.Duration.
const maxTimeoutMS = 1 << 31

// refuse returns why no queue would take the task of a row, or "". The
// writer never writes such a row; a hand-written one, or one of an older
// or broken producer, can hold anything the table's CHECKs let through.
func refuse(kind string, payload []byte, queue string, maxRetry int32, timeoutMS int64) string {
	switch {
	case strings.TrimSpace(queue) == "":
		return "blank queue"
	case strings.TrimSpace(kind) == "":
		return "blank kind"
	case !tasks.IsKind(kind):
		return fmt.Sprintf("unknown kind %q (want one of %s)", kind, strings.Join(tasks.Kinds(), ", "))
	case maxRetry < 0:
		return fmt.Sprintf("negative max_retry %d", maxRetry)
	case timeoutMS < 0 || timeoutMS > maxTimeoutMS:
		return fmt.Sprintf("timeout_ms %d out of range [0, %d]", timeoutMS, int64(maxTimeoutMS))
	}
	// A payload of a newer format is no poison: a newer worker runs it.
	if _, err := tasks.Unmarshal(kind, payload); err != nil && !errors.Is(err, tasks.ErrNewerFormat) {
		return "payload: " + err.Error()
	}
	return ""
}

// claim deletes (uncommitted) up to batch rows and returns them as
// Messages, with each row's age in seconds, and the rows refused.
func (r *Relay) claim(ctx context.Context, tx pgx.Tx, batch int) ([]enqueue.Message, []float64, []refusedRow, error) {
	rows, err := tx.Query(ctx, r.claimSQL, batch)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("outbox relay: claim rows: %w", err)
	}
	defer rows.Close()
	var (
		msgs    []enqueue.Message
		ages    []float64
		refused []refusedRow
	)
	for rows.Next() {
		var (
			m         enqueue.Message
			id        int64
			createdAt time.Time
			maxRetry  int32
			timeoutMS int64
			age       float64
		)
		if err := rows.Scan(&id, &createdAt, &m.Kind, &m.Payload, &m.Queue, &maxRetry, &timeoutMS, &age); err != nil {
			return nil, nil, nil, fmt.Errorf("outbox relay: read a claimed row: %w", err)
		}
		if reason := refuse(m.Kind, m.Payload, m.Queue, maxRetry, timeoutMS); reason != "" {
			refused = append(refused, refusedRow{Message: m, id: id, createdAt: createdAt,
				maxRetry: maxRetry, timeoutMS: timeoutMS, reason: reason})
			continue
		}
		m.MaxRetry, m.Timeout = int(maxRetry), time.Duration(timeoutMS)*time.Millisecond
		msgs = append(msgs, m)
		ages = append(ages, age)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("outbox relay: claim rows: %w", err)
	}
	return msgs, ages, refused, nil
}

// listen holds a LISTEN connection and turns notifications into wake-ups,
// reconnecting with backoff when the connection fails. While it is down the
// safety poll still finds the rows.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	retry := r.cfg.RetryMin
	for ctx.Err() == nil {
		err := r.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		r.cfg.Metrics.failed(stageListen)
		r.mu.Lock()
		r.listening, r.listenErr = false, err
		r.mu.Unlock()
		r.log.Warn("outbox relay: LISTEN connection lost; polling meanwhile", "error", err, "retry_in", retry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(jitter(retry)):
		}
		retry = min(2*retry, r.cfg.RetryMax)
	}
}

func (r *Relay) listenOnce(ctx context.Context, wake chan<- struct{}) error {
	conn, err := pgx.ConnectConfig(ctx, r.cfg.DB.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{r.cfg.Outbox.Channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	r.mu.Lock()
	r.listening, r.listenErr = true, nil
	r.mu.Unlock()
	notify(wake) // rows written while nobody listened
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		notify(wake)
	}
}

// notify wakes the relay loop without blocking: one pending wake-up is
// enough, since a round takes every row.
func notify(wake chan<- struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

// sample updates the depth and oldest-age gauges every StatsInterval.
func (r *Relay) sample(ctx context.Context) {
	t := time.NewTicker(r.cfg.StatsInterval)
	defer t.Stop()
	for {
		var (
			depth  int64
			oldest float64
		)
		if err := r.cfg.DB.QueryRow(ctx, r.statsSQL).Scan(&depth, &oldest); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.cfg.Metrics.failed(stageStats)
			r.log.Warn("outbox relay: sample the outbox depth", "error", err)
		} else {
			r.cfg.Metrics.sampled(depth, oldest)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ErrAmbiguousTable is returned by Relay.Run when Config.Schema is empty and
// more than one schema holds a table of the outbox's name.
var ErrAmbiguousTable = errors.New("outbox table name is ambiguous")

// querier runs one query: a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// checkSchema refuses an outbox whose unqualified name more than one schema
// holds. With Config.Schema empty, each writer's and relay's search_path
// picks the table, and a writer whose search_path differs from the relay's
// (a per-tenant search_path, say) writes rows that relay never reads: they
// would wait forever, silently. Naming the schema makes that impossible.
func (r *Relay) checkSchema(ctx context.Context, db querier) error {
	if r.cfg.Outbox.Schema != "" {
		return nil
	}
	rows, err := db.Query(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1`, r.cfg.Outbox.Table)
	if err != nil {
		return fmt.Errorf("outbox relay: look up the schemas of table %q: %w", r.cfg.Outbox.Table, err)
	}
	schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("outbox relay: look up the schemas of table %q: %w", r.cfg.Outbox.Table, err)
	}
	if len(schemas) > 1 {
		return fmt.Errorf("%w: schemas %s each hold a table %q, and with no schema set every writer and relay takes the one its search_path finds, so writes can land where no relay reads; set the schema on writers and relays (outbox.Config.Schema, --schema), one relay per schema",
			ErrAmbiguousTable, strings.Join(schemas, ", "), r.cfg.Outbox.Table)
	}
	return nil
}
