package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PgxTx is a pgx transaction whose outbox writes ride its COMMIT: a write
// through it (w.DeleteKeys(ctx, tx, ...)) is validated at once and queued,
// and Commit sends the queued INSERTs and the COMMIT together, in one round
// trip, the one every transaction makes anyway. Begin it with BeginPgx (a
// pool) or BeginPgxConn (a connection); it is a pgx.Tx for everything else
// the transaction does, and an outbox.Tx.
//
//	tx, err := outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
//	...
//	defer tx.Rollback(ctx) // a no-op after Commit
//	_, err = tx.Exec(ctx, `UPDATE products SET price = $1 WHERE id = $2`, price, id)
//	...
//	err = w.Publish(ctx, tx, "product.updated", map[string]string{"id": id}) // queued
//	...
//	err = tx.Commit(ctx) // the INSERT and the COMMIT, one round trip
//
// Why a transaction of its own and not a wrapper of any pgx.Tx: a pool's
// transaction (pgxpool.Tx) gives its connection back only in its own Commit
// or Rollback, each a round trip of its own. A PgxTx holds the connection
// (it acquires it from the pool, and releases it when the transaction ends)
// and commits on it itself.
//
// The batch works in every pgx exec mode, the simple protocol of pgbouncer
// users included. Where pgx describes a statement before running it
// (QueryExecModeDescribeExec each time, the statement cache on a
// connection's first use) the batch takes that extra round trip too, as
// any statement would.
//
// A queued write is sent only by Commit. An INSERT that fails there (a
// constraint, a missing table) fails Commit with an error naming the write;
// the transaction is then rolled back, data and writes alike. A context or
// connection that ends while the batch is in flight leaves the outcome
// unknown, as for any COMMIT (the error says so): the data and the writes
// committed together or not at all. A
// transaction already aborted by an earlier error returns
// pgx.ErrTxCommitRollback from Commit, as pgx does.
//
// Savepoints: tx.Begin starts one as pgx does. A write queued on the PgxTx
// is sent at the outer Commit even if the savepoint it was made under rolls
// back. That is at worst an extra invalidation, which is harmless
// (invalidations only remove or advance), never a lost one. To make a write
// part of the savepoint, write through outbox.Pgx(savepoint): it is sent at
// once, inside it.
//
// Like a pgx.Tx, a PgxTx is for one goroutine at a time, but for its
// outbox writes: those may be made from several goroutines at once, and
// each is either sent by Commit or fails (pgx.ErrTxClosed once Commit or
// Rollback has begun), never lost. Once it has ended
// (Commit or Rollback), its methods but Conn return pgx.ErrTxClosed, as
// pgx's do, and so do those of its savepoints. A pgx.LargeObjects taken from it must not
// be used after it ends: the connection may be in another's hands by then.
type PgxTx struct {
	// The real transaction while open; once it has ended, a closed one, so
	// that every method this type does not override returns
	// pgx.ErrTxClosed instead of reaching a connection that may be back in
	// its pool. (The real transaction cannot be closed by hand: after the
	// batched COMMIT it still believes itself open.) Embedded under an
	// unexported name, so its methods are promoted but the field is not
	// reachable from outside.
	realTx
	conn   *pgx.Conn
	commit string // the COMMIT statement: pgx.TxOptions.CommitQuery or "commit"
	// release returns a pool's connection; nil for BeginPgxConn, and once
	// called.
	release func()
	nested  []*pgxSavepoint // closed with the transaction
	// mu guards queued and done: a write made while another is, or while
	// Commit runs (goroutines fanning out in one transaction), is either
	// sent or fails with pgx.ErrTxClosed, never returns nil and vanishes,
	// as an unguarded append let it (pgx fails such misuse loudly, conn
	// busy; a queue would fail it silently).
	mu     sync.Mutex
	queued []stmt // the writes Commit sends
	done   bool   // Commit or Rollback has begun
}

// realTx names the embedded pgx.Tx of PgxTx and pgxSavepoint.
type realTx = pgx.Tx

var (
	_ pgx.Tx = (*PgxTx)(nil)
	_ Tx     = (*PgxTx)(nil)
)

// BeginPgx acquires a connection from pool and begins a transaction on it
// with opts (conn.BeginTx), whose outbox writes ride its COMMIT; see PgxTx.
// The connection returns to the pool when the transaction ends.
func BeginPgx(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions) (*PgxTx, error) {
	if pool == nil {
		return nil, errors.New("outbox: BeginPgx: nil *pgxpool.Pool")
	}
	c, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("outbox: begin: acquire a connection: %w", err)
	}
	t, err := begin(ctx, c.Conn(), opts)
	if err != nil {
		c.Release() // pgxpool destroys it if the failed begin broke it
		return nil, err
	}
	t.release = c.Release
	return t, nil
}

// BeginPgxConn begins a transaction on conn with opts (conn.BeginTx), whose
// outbox writes ride its COMMIT; see PgxTx. conn is the caller's, before and
// after: the transaction only uses it.
func BeginPgxConn(ctx context.Context, conn *pgx.Conn, opts pgx.TxOptions) (*PgxTx, error) {
	if conn == nil {
		return nil, errors.New("outbox: BeginPgxConn: nil *pgx.Conn")
	}
	return begin(ctx, conn, opts)
}

func begin(ctx context.Context, conn *pgx.Conn, opts pgx.TxOptions) (*PgxTx, error) {
	tx, err := conn.BeginTx(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("outbox: begin: %w", err)
	}
	commit := opts.CommitQuery
	if commit == "" {
		commit = "commit"
	}
	return &PgxTx{realTx: tx, conn: conn, commit: commit}, nil
}

// exec queues s for Commit.
func (t *PgxTx) exec(_ context.Context, s stmt) error {
	if t == nil {
		return errors.New("nil *outbox.PgxTx (begin it with outbox.BeginPgx)")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.realTx == nil {
		return errors.New("outbox.PgxTx not begun (begin it with outbox.BeginPgx)")
	}
	if t.done {
		return pgx.ErrTxClosed
	}
	t.queued = append(t.queued, s)
	return nil
}

// Commit commits the transaction with its queued outbox writes, in one
// round trip: a pgx.Batch of the INSERTs and the COMMIT. With no write
// queued it is the plain COMMIT. If an INSERT fails, the transaction is
// rolled back and the error names the write; if the transaction was already
// aborted, Commit rolls it back and returns pgx.ErrTxCommitRollback, as
// pgx does. Either way the transaction has ended and its connection is
// released. A second Commit returns pgx.ErrTxClosed.
func (t *PgxTx) Commit(ctx context.Context) error {
	queued, ok := t.close()
	if !ok {
		return pgx.ErrTxClosed
	}
	defer t.end()
	if len(queued) == 0 {
		return t.realTx.Commit(ctx)
	}
	// The status is the one the server reported at the end of the last
	// exchange; it costs no round trip.
	switch status := t.conn.PgConn().TxStatus(); status {
	case 'T': // in the transaction: send
	case 'E':
		// Aborted by an earlier error: the INSERTs would only fail. The
		// real COMMIT rolls back and reports it as pgx does.
		forget(queued)
		return t.realTx.Commit(ctx)
	default:
		n := len(queued)
		forget(queued)
		return fmt.Errorf("outbox: commit: the connection is not in the transaction (status %q: ended by a COMMIT or ROLLBACK sent through Exec, or the connection closed); its %d queued outbox writes were not written", status, n)
	}
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(queued)+1)}
	for _, s := range queued {
		b.Queue(s.sql, s.args...)
	}
	b.Queue(t.commit)
	br := t.conn.SendBatch(ctx, b)
	err := readCommit(br, queued)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		return nil
	}
	forget(queued)
	// A failed INSERT leaves the transaction aborted: the server skipped
	// the rest of the batch, COMMIT included. A failed COMMIT (a deferred
	// constraint, a serialization failure) has ended it already ('I'); a
	// broken connection is closed, and Rollback's failure then closes it
	// for good, so the pool destroys it.
	if t.conn.PgConn().TxStatus() != 'I' {
		_ = t.realTx.Rollback(ctx) // err is the one to return
	}
	return err
}

// readCommit checks the result of every statement of the commit batch.
func readCommit(br pgx.BatchResults, queued []stmt) error {
	for _, s := range queued {
		if _, err := br.Exec(); err != nil {
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) && !pgconn.SafeToRetry(err) {
				// Not the server's answer to this INSERT but a context
				// or connection that ended with the batch sent: the
				// server may have run all of it, COMMIT included (the
				// cancel request pgx sends can land too late, or not at
				// all), so claiming a rollback could make the caller
				// redo work that committed.
				return fmt.Errorf("outbox: commit: no answer from the server to the batch of %d outbox writes and the COMMIT, which may have committed or not: %w", len(queued), err)
			}
			return fmt.Errorf("outbox %s: insert into the outbox at commit (the transaction is rolled back): %w", s.what, err)
		}
	}
	tag, err := br.Exec()
	if err != nil {
		return err // the COMMIT's own, as pgx's Commit returns it
	}
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// Rollback drops the queued outbox writes and rolls the transaction back.
// After Commit or Rollback it returns pgx.ErrTxClosed, so a deferred
// Rollback is fine.
func (t *PgxTx) Rollback(ctx context.Context) error {
	queued, ok := t.close()
	if !ok {
		return pgx.ErrTxClosed
	}
	defer t.end()
	forget(queued)
	return t.realTx.Rollback(ctx)
}

// Begin starts a savepoint (a pseudo nested transaction), as pgx's Begin
// does. Writes through it go at once: wrap it with outbox.Pgx.
func (t *PgxTx) Begin(ctx context.Context) (pgx.Tx, error) {
	sp, err := t.realTx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return t.track(sp), nil
}

// Conn returns the connection the transaction runs on, as pgx's Conn does,
// also once it has ended.
func (t *PgxTx) Conn() *pgx.Conn { return t.conn }

// track wraps a savepoint of t so that it closes with t.
func (t *PgxTx) track(sp pgx.Tx) *pgxSavepoint {
	n := &pgxSavepoint{realTx: sp, outer: t}
	t.nested = append(t.nested, n)
	return n
}

// close marks t done, so that later writes fail, and takes its queued
// writes; false if Commit or Rollback had begun already.
func (t *PgxTx) close() ([]stmt, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return nil, false
	}
	t.done = true
	q := t.queued
	t.queued = nil
	return q, true
}

// forget drops queued writes, which will never commit, and frees the
// notify gate of each Writer whose NOTIFY rode one of them, so that its
// next write notifies.
func forget(queued []stmt) {
	for _, s := range queued {
		if s.release != nil {
			s.release()
		}
	}
}

// end closes t and its savepoints and releases the pool's connection, once.
func (t *PgxTx) end() {
	closed := closedTx()
	t.mu.Lock()
	t.realTx = closed
	t.mu.Unlock()
	for _, n := range t.nested {
		n.realTx = closed
	}
	t.nested = nil
	if r := t.release; r != nil {
		t.release = nil
		r()
	}
}

// closedTx returns a closed pgx transaction: each of its methods returns
// pgx.ErrTxClosed. pgx hands one out for a transaction-beginning batch that
// failed before it was sent, and exports no other way to make one.
func closedTx() pgx.Tx {
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	return pgx.FailedBatchResults(b, pgx.ErrTxClosed).Tx()
}

// pgxSavepoint is a savepoint of a PgxTx. pgx's own savepoint reaches the
// connection through the real transaction, which stays open in pgx's eyes
// after the batched COMMIT, so it would still send statements on a
// connection back in its pool; this one closes with its PgxTx.
type pgxSavepoint struct {
	realTx
	outer *PgxTx
}

// Begin starts a savepoint inside this one.
func (n *pgxSavepoint) Begin(ctx context.Context) (pgx.Tx, error) {
	sp, err := n.realTx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return n.outer.track(sp), nil
}

// Conn returns the connection of the outer transaction.
func (n *pgxSavepoint) Conn() *pgx.Conn { return n.outer.conn }
