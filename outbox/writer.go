package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/invalidator/invalidator/enqueue"
)

// Writer writes invalidations into the caller's transaction: one row per
// task in the outbox table, and, at most once per NotifyInterval, a NOTIFY
// that wakes the relays at commit. It
// validates through an enqueue.Builder, so it refuses exactly what
// enqueue.Client refuses, with the same errors, before anything is written:
// the caller can roll back. It is safe for concurrent use.
//
//	tx, err := outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
//	...
//	_, err = tx.Exec(ctx, `UPDATE products SET price = $1 WHERE id = $2`, price, id)
//	...
//	err = w.Publish(ctx, tx, "product.updated", map[string]string{"id": id})
//	...
//	err = tx.Commit(ctx) // the invalidation commits with the write, or neither does
type Writer struct {
	b       *enqueue.Builder
	channel string
	// The statements are fixed per Config, so pgx prepares each once per
	// connection (its statement cache) and a write is one round trip: the
	// INSERT, with or without pg_notify, in one statement.
	insertOne, insertOneNotify   string
	insertMany, insertManyNotify string
	notify                       *notifyGate // shared by the Writers With derives
}

// DefaultNotifyInterval is a Writer's NotifyInterval unless
// WithNotifyInterval sets it.
const DefaultNotifyInterval = 5 * time.Millisecond

// WriterOption sets an optional knob of a Writer.
type WriterOption func(*Writer)

// WithNotifyInterval sets how often at most the Writer's transactions send
// the NOTIFY that wakes the relays: a write within d of the Writer's last
// notifying write adds its row without one. 0 notifies in every
// transaction. Default: DefaultNotifyInterval (5ms).
//
// Why: PostgreSQL serializes the commits of notifying transactions (a
// global lock held through the commit's WAL flush), so with durable commits
// and concurrent writers a NOTIFY per transaction defeats group commit and
// multiplies the commit's cost. A relay that moved rows keeps polling, from
// 1ms doubling up to its PollInterval, so rows that flow steadily are found
// without notifications.
//
// The hole it opens, and its bound: a transaction that skipped its NOTIFY
// because another transaction of this Writer notified just before, when
// that other transaction then rolls back or stays open, commits with no
// notification of its own. Its row is found by the relay's next poll: soon
// when the relay is warm (it moved rows in the last moments), within the
// relay's PollInterval when it was idle, or at the next notifying write of
// this Writer, whichever comes first. It is late, never lost.
func WithNotifyInterval(d time.Duration) WriterOption {
	return func(w *Writer) { w.notify.interval = max(d, 0) }
}

// notifyGate decides which writes of a Writer carry the NOTIFY.
type notifyGate struct {
	interval time.Duration
	epoch    time.Time    // monotonic origin of last
	last     atomic.Int64 // ns after epoch of the last notifying write; 0: none yet
}

// take reports whether the write starting now should notify, and claims the
// interval if so: one write per interval wins, the others skip.
func (g *notifyGate) take() bool {
	if g.interval == 0 {
		return true
	}
	now := int64(time.Since(g.epoch)) + 1 // never 0, which means "none yet"
	last := g.last.Load()
	if last != 0 && now-last < int64(g.interval) {
		return false
	}
	return g.last.CompareAndSwap(last, now)
}

// release forgets a notifying write whose statement failed (its transaction
// is aborted, so its NOTIFY will never be sent): the next write notifies.
func (g *notifyGate) release() { g.last.Store(0) }

// NewWriter returns a Writer into the outbox of cfg, validating with b
// (enqueue.NewBuilder, or an enqueue.Client's Builder): b's policy, cache
// target and overrides decide each task as they would for enqueue.
func NewWriter(b *enqueue.Builder, cfg Config, opts ...WriterOption) (*Writer, error) {
	if b == nil {
		return nil, errors.New("outbox: nil enqueue.Builder (pass enqueue.NewBuilder(enqueue.Config{Policy: policy}))")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	// A data-modifying WITH runs once whether or not the query reads it;
	// the notification is sent at commit, and never if the transaction
	// rolls back. PostgreSQL folds identical notifications of one
	// transaction into one.
	cols := " (kind, payload, queue, max_retry, timeout_ms) "
	one := "INSERT INTO " + cfg.table() + cols + "VALUES ($1, $2, $3, $4, $5)"
	many := "INSERT INTO " + cfg.table() + cols +
		"SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::integer[], $5::bigint[])"
	w := &Writer{
		b:                b,
		channel:          cfg.Channel,
		insertOne:        one,
		insertOneNotify:  "WITH ins AS (" + one + ") SELECT pg_notify($6, '')",
		insertMany:       many,
		insertManyNotify: "WITH ins AS (" + many + ") SELECT pg_notify($6, '')",
		notify:           &notifyGate{interval: DefaultNotifyInterval, epoch: time.Now()},
	}
	for _, o := range opts {
		o(w)
	}
	return w, nil
}

// With returns a Writer that applies opts over the class defaults, as
// enqueue.Client.With does; the overrides are checked at each write.
func (w *Writer) With(opts ...enqueue.Option) *Writer {
	d := *w
	d.b = w.b.With(opts...)
	return &d
}

// DeleteKeys writes the deletion of keys (binary-safe): one row, or several
// when they do not fit one task. The relay merges the keys of many rows into
// few tasks.
func (w *Writer) DeleteKeys(ctx context.Context, tx Tx, keys ...string) error {
	msgs, err := w.b.DeleteKeys(keys...)
	if err != nil {
		return fmt.Errorf("outbox %w", err) // "outbox delete keys: ..."
	}
	return w.write(ctx, tx, "delete keys", msgs...)
}

// DeleteFamily writes a pattern delete of one family; see
// enqueue.Client.DeleteFamily for what is refused.
func (w *Writer) DeleteFamily(ctx context.Context, tx Tx, family string, params map[string]string) error {
	m, err := w.b.DeleteFamily(family, params)
	if err != nil {
		return fmt.Errorf("outbox %w", err)
	}
	return w.write(ctx, tx, fmt.Sprintf("delete family %q", family), m)
}

// BumpVersion writes a version bump of one instance of a version family.
func (w *Writer) BumpVersion(ctx context.Context, tx Tx, family string, params map[string]string) error {
	m, err := w.b.BumpVersion(family, params)
	if err != nil {
		return fmt.Errorf("outbox %w", err)
	}
	return w.write(ctx, tx, fmt.Sprintf("bump version %q", family), m)
}

// Publish writes one event; the policy's events section decides what it
// invalidates (see enqueue.Client.Publish).
func (w *Writer) Publish(ctx context.Context, tx Tx, event string, attrs map[string]string) error {
	m, err := w.b.Publish(event, attrs)
	if err != nil {
		return fmt.Errorf("outbox %w", err)
	}
	return w.write(ctx, tx, fmt.Sprintf("publish %q", event), m)
}

// write inserts msgs in one statement: sent at once, or queued for the
// commit by a *PgxTx. An error of an INSERT sent at once leaves the
// transaction aborted (PostgreSQL's rule), so the caller must roll back.
func (w *Writer) write(ctx context.Context, tx Tx, what string, msgs ...enqueue.Message) error {
	if tx == nil {
		return fmt.Errorf("outbox %s: nil Tx (begin with outbox.BeginPgx, or wrap the transaction with outbox.Pgx or outbox.SQL)", what)
	}
	notify := w.notify.take()
	s := stmt{what: what}
	if len(msgs) == 1 {
		m := msgs[0]
		s.sql, s.args = w.insertOne, []any{m.Kind, m.Payload, m.Queue, int32(m.MaxRetry), m.Timeout.Milliseconds()}
		if notify {
			s.sql = w.insertOneNotify
		}
	} else {
		kinds, payloads, queues := make([]string, len(msgs)), make([][]byte, len(msgs)), make([]string, len(msgs))
		retries, timeouts := make([]int32, len(msgs)), make([]int64, len(msgs))
		for i, m := range msgs {
			kinds[i], payloads[i], queues[i] = m.Kind, m.Payload, m.Queue
			retries[i], timeouts[i] = int32(m.MaxRetry), m.Timeout.Milliseconds()
		}
		s.sql, s.args = w.insertMany, []any{kinds, payloads, queues, retries, timeouts}
		if notify {
			s.sql = w.insertManyNotify
		}
	}
	if notify {
		s.args = append(s.args, w.channel)
		s.release = w.notify.release
	}
	if err := tx.exec(ctx, s); err != nil {
		if notify {
			w.notify.release()
		}
		return fmt.Errorf("outbox %s: insert into the outbox (roll the transaction back): %w", what, err)
	}
	return nil
}
