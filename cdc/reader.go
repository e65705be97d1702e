package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/invalidator/invalidator/enqueue"
)

// statusMinGap is the least time between two standby status updates sent
// for progress (keepalives that ask, and the idle interval, are answered at
// once): at 1000 transactions a second one a transaction would be wasted.
const statusMinGap = 20 * time.Millisecond

// maxHoldFactor bounds how long events of committed transactions are held
// while the stream keeps coming: maxHoldFactor FlushWaits.
const maxHoldFactor = 10

// errSlotBusy means another process reads the slot: this one is a standby.
var errSlotBusy = errors.New("replication slot is in use by another process")

// Reader reads the row changes of the policy's tables from a logical
// replication slot and enqueues their events. See the package
// documentation for its guarantees.
type Reader struct {
	cfg Config
	q   *enqueue.Client
	b   *enqueue.Builder
	log *slog.Logger

	// hook, when set (tests), runs after each enqueue of pending events
	// with the number enqueued and the peak of events held so far.
	hook atomic.Pointer[func(enqueued, peak int)]
	// published counts the events enqueued (see Published).
	published atomic.Int64

	mu      sync.Mutex
	running bool   // guarded by mu
	state   string // guarded by mu: "connecting", "active", "standby"
	lastErr error  // guarded by mu: why the last session ended
}

// Reader states, as Ready reports them.
const (
	stateConnecting = "connecting"
	stateActive     = "active"
	stateStandby    = "standby"
)

// NewReader returns a Reader; Run starts it.
func NewReader(cfg Config) (*Reader, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if c.Queue == nil {
		return nil, fmt.Errorf("%w: nil Queue (pass the queue Redis)", ErrConfig)
	}
	q, err := enqueue.New(c.Queue, enqueue.Config{Policy: c.Policy, Target: c.Target})
	if err != nil {
		return nil, err
	}
	return &Reader{cfg: c, q: q, b: q.Builder(), log: c.Logger.With("subsystem", "cdc", "slot", c.Slot), state: stateConnecting}, nil
}

// fatal reports errors that retrying cannot fix: the reader stops with
// them, and the error says what to do.
func fatal(err error) bool {
	return errors.Is(err, ErrWALLevel) || errors.Is(err, ErrNoReplication) || errors.Is(err, ErrNotSetUp) ||
		errors.Is(err, ErrReplicaIdentity) || errors.Is(err, ErrConfig) || errors.Is(err, errMalformed)
}

// errMalformed wraps a message the reader cannot decode: reading it again
// would fail again.
var errMalformed = errors.New("cdc: undecodable replication message")

// Run reads until ctx ends and returns nil then. While another process
// reads the slot it waits as a standby and takes over when that process's
// connection ends. A lost connection (PostgreSQL restarting) or a queue
// Redis that refuses the events ends the session: the reader reconnects
// after a growing wait and PostgreSQL sends again every change after the
// last position confirmed. Run returns an error only for what retrying
// cannot fix: wal_level, privileges, a missing slot, publication or table,
// a REPLICA IDENTITY that does not cover the mapped columns.
func (r *Reader) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return errors.New("cdc: Run is already running")
	}
	r.running = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running, r.state = false, stateConnecting
		r.mu.Unlock()
		r.cfg.Metrics.setActive(false)
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if r.cfg.StatsInterval > 0 {
		wg.Go(func() { r.sample(ctx) })
	}
	retry := r.cfg.RetryMin
	standby := false
	for {
		progressed, err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.mu.Lock()
		r.lastErr = err
		if !errors.Is(err, errSlotBusy) {
			r.state = stateConnecting
		}
		r.mu.Unlock()
		r.cfg.Metrics.setActive(false)
		if fatal(err) {
			r.log.Error("cdc reader stopped", "error", err)
			return err
		}
		wait := r.cfg.TakeoverInterval
		if errors.Is(err, errSlotBusy) {
			if !standby {
				r.log.Info("cdc reader is a standby: another process reads the slot; taking over when it stops", "error", err)
				standby = true
			}
			r.mu.Lock()
			r.state = stateStandby
			r.mu.Unlock()
		} else {
			standby = false
			if progressed {
				retry = r.cfg.RetryMin
			}
			wait = jitter(retry)
			retry = min(2*retry, r.cfg.RetryMax)
			r.log.Warn("cdc session ended; reconnecting, the slot sends again every change not confirmed", "error", err, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// jitter spreads a wait over [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// Ready returns nil while the reader streams the slot or waits as a
// standby (both are what a healthy member of a pair does); the reason
// otherwise: the /readyz check.
func (r *Reader) Ready(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !r.running:
		return errors.New("cdc reader: not running")
	case r.state == stateActive || r.state == stateStandby:
		return nil
	case r.lastErr != nil:
		return fmt.Errorf("cdc reader: reconnecting: %w", r.lastErr)
	}
	return errors.New("cdc reader: connecting")
}

// Published returns the events this Reader has enqueued since it was made
// (each event and values once per batch).
func (r *Reader) Published() int64 { return r.published.Load() }

// Active reports whether this reader holds the slot now.
func (r *Reader) Active() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state == stateActive
}

// replicationConfig is the DSN's config for a replication connection.
func (r *Reader) replicationConfig() (*pgconn.Config, error) {
	cfg, err := pgconn.ParseConfig(r.cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("%w: the DSN does not parse", ErrConfig)
	}
	cfg.RuntimeParams["replication"] = "database"
	// The stream is read with a deadline of FlushWait whenever events are
	// held. pgconn's default answer to an expired context is a cancel
	// request over a new connection and a deadline a second later: every
	// pause in the stream would cost a second. A read deadline on the
	// socket ends the read at once, and a timed-out read leaves the
	// connection usable.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	return cfg, nil
}

// session checks the database, opens the stream and reads it until it
// fails or ctx ends. progressed reports that it streamed.
func (r *Reader) session(ctx context.Context) (progressed bool, err error) {
	db, err := pgx.Connect(ctx, r.cfg.DSN)
	if err != nil {
		r.cfg.Metrics.failed(stageConnect)
		return false, fmt.Errorf("cdc: connect: %w", err)
	}
	err = Check(ctx, db, Target{Policy: r.cfg.Policy, Slot: r.cfg.Slot, Publication: r.cfg.Publication})
	var confirmed pglogrepl.LSN
	if err == nil {
		// The slot's own position: the reader never confirms below it.
		err = db.QueryRow(ctx, "SELECT COALESCE(confirmed_flush_lsn, '0/0')::text FROM pg_replication_slots WHERE slot_name = $1", r.cfg.Slot).Scan(&confirmed)
	}
	_ = db.Close(context.WithoutCancel(ctx))
	if err != nil {
		r.cfg.Metrics.failed(stageConnect)
		return false, err
	}

	rcfg, err := r.replicationConfig()
	if err != nil {
		return false, err
	}
	conn, err := pgconn.ConnectConfig(ctx, rcfg)
	if err != nil {
		r.cfg.Metrics.failed(stageConnect)
		return false, replicationRefused(fmt.Errorf("cdc: open a replication connection: %w", err))
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	err = pglogrepl.StartReplication(ctx, conn, r.cfg.Slot, 0, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		// Protocol 1 without streaming: PostgreSQL sends a transaction
		// only after it has decoded its commit record, so every change
		// read is committed and no rolled-back work ever arrives.
		PluginArgs: []string{"proto_version '1'", "publication_names '" + r.cfg.Publication + "'"},
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			switch pgErr.Code {
			case "55006": // object_in_use: another walsender holds the slot
				return false, fmt.Errorf("%w: %s", errSlotBusy, pgErr.Message)
			case "42704": // undefined_object
				return false, fmt.Errorf("%w: %s; run invalidator cdc setup", ErrNotSetUp, pgErr.Message)
			}
		}
		r.cfg.Metrics.failed(stageConnect)
		return false, replicationRefused(fmt.Errorf("cdc: start replication from slot %s: %w", r.cfg.Slot, err))
	}
	r.mu.Lock()
	r.state, r.lastErr = stateActive, nil
	r.mu.Unlock()
	r.cfg.Metrics.setActive(true)
	r.log.Info("cdc reader streaming", "publication", r.cfg.Publication)
	err = r.stream(ctx, conn, confirmed)
	if err != nil && ctx.Err() == nil && !fatal(err) {
		r.cfg.Metrics.failed(stageStream)
	}
	return true, err
}

// replicationRefused marks a refusal of the replication connection itself
// (no REPLICATION attribute, pg_hba.conf) as ErrNoReplication, with the fix.
func replicationRefused(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case "42501": // insufficient_privilege: "must be superuser or replication role"
		return fmt.Errorf("%w: %w: give the role the REPLICATION attribute (ALTER ROLE <role> REPLICATION)", ErrNoReplication, err)
	case "28000": // invalid_authorization_specification: no pg_hba.conf entry
		return fmt.Errorf("%w: %w: allow the role replication connections in pg_hba.conf (host replication <role> <address> <method>, or \"all\" for the database with replication=database)", ErrNoReplication, err)
	}
	return err
}

// streamState is what one session holds between messages.
type streamState struct {
	dec *decoder
	// pubs are the events read and not yet enqueued, each once; seen
	// indexes them by publication id.
	pubs []publication
	seen map[string]struct{}
	// commits are the commit times of transactions whose events are in
	// pubs, for the lag metric.
	commits []time.Time
	inTx    bool
	txPubs  bool // the open transaction added events
	txTime  time.Time
	// safe is the highest position all of whose changes are enqueued:
	// what the reader may confirm. sent is the last one confirmed.
	safe, sent pglogrepl.LSN
	lastStatus time.Time
	// end is the end of the last transaction whose commit was read:
	// safe once the events held are enqueued.
	end  pglogrepl.LSN
	peak int
	// heldSince is when the oldest event held was read.
	heldSince time.Time
}

// stream reads the replication stream of conn until it fails or ctx ends.
func (r *Reader) stream(ctx context.Context, conn *pgconn.PgConn, confirmed pglogrepl.LSN) error {
	st := &streamState{dec: newDecoder(r.cfg.Policy), seen: map[string]struct{}{}, lastStatus: time.Now(),
		safe: confirmed, sent: confirmed, end: confirmed}
	defer func() {
		// Stopping: enqueue and confirm what is complete, so the next
		// reader does not read it again (it would be harmless, but late).
		if ctx.Err() == nil || st.inTx {
			return
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if r.flush(sctx, st) == nil {
			_ = r.status(sctx, conn, st, true)
		}
	}()
	for {
		if ctx.Err() != nil {
			return nil
		}
		flushable := len(st.pubs) > 0 && !st.inTx
		deadline := st.lastStatus.Add(r.cfg.StatusInterval)
		if flushable {
			deadline = time.Now().Add(r.cfg.FlushWait)
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		msg, err := conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !pgconn.Timeout(err) {
				return fmt.Errorf("cdc: read the replication stream: %w", err)
			}
			// The stream paused: enqueue what is held, then confirm.
			if flushable {
				if err := r.flush(ctx, st); err != nil {
					return err
				}
			}
			if err := r.status(ctx, conn, st, time.Since(st.lastStatus) >= r.cfg.StatusInterval); err != nil {
				return err
			}
			continue
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if err := r.handle(ctx, conn, st, msg.Data); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("cdc: replication stream: %w", pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyDone:
			return errors.New("cdc: the server ended the replication stream")
		}
	}
}

// handle processes one CopyData message of the stream.
func (r *Reader) handle(ctx context.Context, conn *pgconn.PgConn, st *streamState, data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty CopyData", errMalformed)
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("%w: keepalive: %v", errMalformed, err)
		}
		// Everything before the keepalive has arrived; with nothing held,
		// everything up to its position is done.
		if !st.inTx && len(st.pubs) == 0 && pkm.ServerWALEnd > st.safe {
			st.safe = pkm.ServerWALEnd
		}
		return r.status(ctx, conn, st, pkm.ReplyRequested)
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("%w: XLogData: %v", errMalformed, err)
		}
		c, err := st.dec.decode(xld.WALData)
		if err != nil {
			if errors.Is(err, ErrReplicaIdentity) {
				return err
			}
			return fmt.Errorf("%w at %s: %v", errMalformed, xld.WALStart, err)
		}
		return r.apply(ctx, conn, st, c)
	}
	return nil
}

// apply takes one decoded change into the stream state.
func (r *Reader) apply(ctx context.Context, conn *pgconn.PgConn, st *streamState, c change) error {
	switch {
	case c.begin != nil:
		st.inTx, st.txPubs, st.txTime = true, false, c.begin.CommitTime
	case c.commit != nil:
		st.inTx = false
		if st.txPubs {
			st.commits = append(st.commits, c.commit.CommitTime)
		}
		if len(st.pubs) == 0 {
			// Nothing of it is held: enqueued already, or nothing to do.
			st.safe = max(st.safe, c.commit.TransactionEndLSN)
			return r.status(ctx, conn, st, false)
		}
		st.end = c.commit.TransactionEndLSN
		// A stream that never pauses for FlushWait would hold events until
		// MaxPending: past a few pauses' worth, enqueue anyway.
		if len(st.commits) >= r.cfg.MaxPending || time.Since(st.heldSince) >= maxHoldFactor*r.cfg.FlushWait {
			return r.flush(ctx, st)
		}
	case c.row:
		for _, t := range c.tables {
			r.cfg.Metrics.change(t)
		}
		for _, s := range c.skips {
			r.cfg.Metrics.skip(s)
			lvl := slog.LevelWarn
			if s.reason == skipMissing || s.reason == skipUnchanged {
				lvl = slog.LevelError // keys may stay stale: an operator must act
			}
			r.log.Log(ctx, lvl, "cdc: a row change publishes nothing", "table", s.table, "reason", s.reason)
		}
		for _, p := range c.pubs {
			id := p.id()
			if _, dup := st.seen[id]; dup {
				continue
			}
			st.seen[id] = struct{}{}
			if len(st.pubs) == 0 {
				st.heldSince = time.Now()
			}
			st.pubs = append(st.pubs, p)
			st.txPubs = true
		}
		st.peak = max(st.peak, len(st.pubs))
		r.cfg.Metrics.pending(len(st.pubs))
		if len(st.pubs) >= r.cfg.MaxPending {
			// Bounded memory for a big transaction: its changes are
			// committed (see session), so enqueueing them now is safe; its
			// position is confirmed only after its commit.
			return r.flush(ctx, st)
		}
	}
	return nil
}

// flush enqueues the events held, then marks the transactions read to their
// end as safe. A publication the policy refuses outright is counted and
// logged, not retried: no key can hold its values (keyspec.Refusal).
func (r *Reader) flush(ctx context.Context, st *streamState) error {
	if len(st.pubs) == 0 {
		return nil
	}
	msgs := make([]enqueue.Message, 0, len(st.pubs))
	published := 0
	events := map[string]int{}
	for _, p := range st.pubs {
		if p.all {
			ms, err := r.b.EveryKeyOf(p.event)
			if err != nil {
				// Those keys stay until their TTL: an operator must act.
				r.cfg.Metrics.skip(skip{table: p.table, reason: skipTruncate})
				r.log.Error("cdc: a truncated table's family cannot be deleted whole; its keys stay until their TTL",
					"table", p.table, "event", p.event, "error", err)
			}
			if len(ms) > 0 {
				msgs = append(msgs, ms...)
				events[p.event]++
				published++
			}
			continue
		}
		// Key deletes where the event is only that, so that Merge makes a
		// few tasks of a batch's thousands of events.
		ms, err := r.b.PublishBatched(p.event, p.attrs)
		if err != nil {
			r.cfg.Metrics.skip(skip{table: p.event, reason: skipRefused})
			r.log.Warn("cdc: the policy refuses a row change's event; nothing to invalidate", "event", p.event, "error", err)
			continue
		}
		msgs = append(msgs, ms...)
		events[p.event]++
		published++
	}
	if len(msgs) > 0 {
		if err := r.q.EnqueueAll(ctx, enqueue.Merge(msgs)); err != nil {
			r.cfg.Metrics.failed(stageEnqueue)
			return fmt.Errorf("cdc: enqueue %d events (they are read again from the slot): %w", published, err)
		}
	}
	now := time.Now()
	lags := make([]float64, len(st.commits))
	for i, c := range st.commits {
		lags[i] = now.Sub(c).Seconds()
	}
	r.cfg.Metrics.flushed(events, lags)
	r.published.Add(int64(published))
	if f := r.hook.Load(); f != nil {
		(*f)(published, st.peak)
	}
	st.pubs, st.commits = st.pubs[:0], st.commits[:0]
	clear(st.seen)
	r.cfg.Metrics.pending(0)
	st.safe = max(st.safe, st.end)
	return nil
}

// status confirms the safe position to PostgreSQL when it advanced (at
// most every statusMinGap), or at once when force is set.
func (r *Reader) status(ctx context.Context, conn *pgconn.PgConn, st *streamState, force bool) error {
	if !force && (st.safe <= st.sent || time.Since(st.lastStatus) < statusMinGap) {
		return nil
	}
	if err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: st.safe}); err != nil {
		return fmt.Errorf("cdc: confirm position %s: %w", st.safe, err)
	}
	st.sent, st.lastStatus = st.safe, time.Now()
	r.cfg.Metrics.confirmed(uint64(st.safe))
	return nil
}

// sample updates the slot gauges every StatsInterval.
func (r *Reader) sample(ctx context.Context) {
	t := time.NewTicker(r.cfg.StatsInterval)
	defer t.Stop()
	var db *pgx.Conn
	defer func() {
		if db != nil {
			_ = db.Close(context.WithoutCancel(ctx))
		}
	}()
	for {
		err := func() error {
			if db == nil || db.IsClosed() {
				var err error
				if db, err = pgx.Connect(ctx, r.cfg.DSN); err != nil {
					db = nil
					return err
				}
			}
			var retained, lag int64
			err := db.QueryRow(ctx, `SELECT COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint,
				COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint
				FROM pg_replication_slots WHERE slot_name = $1`, r.cfg.Slot).Scan(&retained, &lag)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			r.cfg.Metrics.slot(retained, lag)
			return nil
		}()
		if err != nil && ctx.Err() == nil {
			r.cfg.Metrics.failed(stageStats)
			r.log.Warn("cdc: sample the slot", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
