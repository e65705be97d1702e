// Package outbox makes an invalidation part of the application's own
// PostgreSQL transaction (the transactional outbox pattern): a Writer
// inserts the invalidation's task into an outbox table inside the caller's
// transaction, and a Relay moves committed rows to the asynq queues.
//
// Enqueueing after the commit is a dual write: a crash, deploy or Redis blip
// between the commit and the enqueue loses the invalidation, and the cache
// serves stale data until the entry's TTL. With the outbox the invalidation
// commits with the data or not at all, and a relay delivers it at least
// once, whatever fails in between.
//
//	policy, err := keyspec.Load("policy.yaml")
//	...
//	w, err := outbox.NewWriter(enqueue.NewBuilder(enqueue.Config{Policy: policy}), outbox.Config{})
//	...
//	tx, err := outbox.BeginPgx(ctx, pool, pgx.TxOptions{})
//	...
//	defer tx.Rollback(ctx) // a no-op after Commit
//	_, err = tx.Exec(ctx, `UPDATE products SET price = $1 WHERE id = $2`, price, id)
//	...
//	if err := w.Publish(ctx, tx, "product.updated", map[string]string{"id": id}); err != nil {
//		return err // refused at the write site (unknown event, missing attribute): roll back
//	}
//	err = tx.Commit(ctx) // the INSERT rides the COMMIT: one round trip for both
//
// Every transaction makes one round trip whatever it does: its COMMIT. A
// *PgxTx (BeginPgx, BeginPgxConn), a pgx.Tx on a connection of its own,
// queues its outbox writes and sends them with the COMMIT, so a write costs
// no round trip of its own; this is the way to write with pgx. On a 2-core
// machine it added 36-51 µs to a small UPDATE transaction, where the same
// write sent as its own statement added 80-94 µs (`invalidator bench
// outbox`, six runs). The other ways, by what they cost:
//
//   - PgxBatch queues the write into a pgx.Batch the caller sends in its
//     transaction anyway, riding that batch's round trip;
//   - Pgx(tx) wraps a pgx.Tx you are handed and cannot begin yourself (a
//     framework's, a savepoint): each write is its own statement, one round
//     trip;
//   - SQL(tx) wraps a database/sql transaction: one round trip per write,
//     since database/sql has no batch.
//
// The four kinds are those of enqueue.Client: DeleteKeys, DeleteFamily,
// BumpVersion and Publish, validated by the same enqueue.Builder, so the
// outbox refuses exactly what enqueue refuses, with the same errors
// (prefixed "outbox "), and stores the same binary-safe payloads.
//
// # Why a package, not an enqueue option
//
// An enqueue option would put a database dependency and a second delivery
// contract behind a flag of a Redis client: a call that returns nil would
// mean "on the queue" or "in your uncommitted transaction" depending on
// configuration, and the methods would need a transaction argument they
// ignore otherwise. The outbox has its own shape instead: every write takes
// the caller's transaction, it needs a table (Migrate) and a process that
// moves rows (Relay). What it shares with enqueue is everything that decides
// a task: policy lookup, key rendering, parameter checks, class and
// overrides live in enqueue.Builder and its Messages, and the relay enqueues
// through enqueue.Client.Enqueue and merges key deletes with enqueue.Merge.
//
// # Schema
//
// Migrate creates or upgrades the table (default "invalidator_outbox"; the
// schema and table names are configurable and always quoted) from versioned
// SQL files embedded in the binary (migrations/NNN_name.sql), in one
// transaction under an advisory lock, recording each version in
// <table>_migrations; running it again, or from many processes at once, is
// safe. Script returns the same SQL for a DBA to apply by hand.
//
// # Relay
//
// A Relay listens on the table's NOTIFY channel and polls in case a
// notification was missed or never sent. A Writer notifies at most once per
// NotifyInterval (WithNotifyInterval, default 5ms), since PostgreSQL
// serializes the commits of notifying transactions; a relay that moved rows
// polls again after BusyPoll (1ms), the wait doubling per empty round up to
// PollInterval (1s), so rows that flow are found without notifications and
// an idle relay settles at one query per PollInterval. A row whose
// transaction skipped its NOTIFY because an earlier notifier of the same
// Writer rolled back or is still open waits at most the relay's current
// poll wait (at most PollInterval): late, never lost.
// Each round, in one transaction, it deletes up to BatchSize rows with
// FOR UPDATE SKIP LOCKED and RETURNING, merges their key deletes into few
// tasks, enqueues them, and commits; it repeats until the table is empty.
//
//   - At least once: rows are deleted only by the commit that follows their
//     enqueue. If the enqueue fails the transaction rolls back and the rows
//     are retried after a backoff. If the relay dies mid-round (kill -9),
//     its connection drops, PostgreSQL rolls the round back, and another
//     relay sends that batch again: at most one batch is repeated, and a
//     repeat is harmless, since invalidations only remove or advance.
//   - A round commits with synchronous_commit off (for its transaction
//     only): waiting for the WAL flush was most of a round's time, and the
//     rows committed meanwhile waited for it. A database crash within the
//     flush delay can undo the deletes of rounds whose tasks were queued:
//     those rows are sent again, never lost.
//   - A row no queue would take (blank queue or kind, unknown kind, a
//     payload the tasks codec refuses, timeout_ms over 2^31) is moved, in
//     the same transaction, to the table Config.Table+"_quarantine" with
//     its reason, logged and counted, so it cannot fail its batch forever.
//   - Several relays share the work: SKIP LOCKED gives each round rows no
//     other round holds.
//   - Queue Redis down: rows accumulate in the table (the application's
//     transactions are unaffected) and drain when it returns.
//   - Database down: the application cannot commit either; the relay
//     retries and resumes.
//
// An idle relay costs PostgreSQL one idle LISTEN connection and one indexed
// query per PollInterval, plus a row count every StatsInterval for the
// depth metric.
package outbox
