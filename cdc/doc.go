// Package cdc invalidates from PostgreSQL's write-ahead log: a Reader reads
// the row changes of the tables the policy maps (its tables section) from
// a logical replication slot with the built-in pgoutput plugin, resolves
// each to its event, and enqueues the events as enqueue.Client.Publish
// does. Writes that bypass the application (migrations, admin SQL, other
// services, batch jobs) are invalidated too, with no line of code at the
// write site.
//
// Guarantees:
//
//   - At least once. The reader confirms a position to PostgreSQL (a
//     standby status update) only once every change up to it is enqueued.
//     A reader killed at any point, or a PostgreSQL restart, makes the slot
//     send the unconfirmed changes again: they may be enqueued twice, never
//     skipped.
//   - Committed work only, in commit order. The reader asks for pgoutput
//     protocol 1 without streaming, so PostgreSQL sends a transaction only
//     after decoding its commit record (spilling a big one to its own disk,
//     logical_decoding_work_mem) and never sends rolled-back work.
//   - Bounded memory. The events of a transaction are deduplicated and held
//     up to Config.MaxPending; beyond that they are enqueued in chunks
//     while the transaction streams (every change of it is committed, see
//     above) and its end is confirmed after its commit message, so a
//     100,000-row transaction needs MaxPending events of memory, not 100,000.
//   - One reader per slot. PostgreSQL lets one connection read a slot; a
//     second Reader on the same slot waits as a standby and takes over
//     when the first one's connection ends.
//
// An insert publishes the table's event for the new row, a delete for the
// old row, an update for the new row and, when a mapped column changed, for
// the old row too. A TRUNCATE names no rows: it invalidates every key of
// every family the table's event invalidates (enqueue.Builder.EveryKeyOf: a
// family delete with every parameter a wildcard, which for a version family
// deletes its version keys). PostgreSQL sends a deleted row's columns only
// if they are in the table's REPLICA IDENTITY, so the reader refuses to
// start (and Setup says which ALTER TABLE to run) when a mapped column is
// outside it.
//
//	db, _ := pgx.Connect(ctx, dsn)
//	_, err := cdc.Setup(ctx, db, cdc.Target{Policy: policy}) // publication + slot, once
//	r, err := cdc.NewReader(cdc.Config{DSN: dsn, Policy: policy, Queue: queueRedis})
//	err = r.Run(ctx)
package cdc
