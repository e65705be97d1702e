// Package tasks defines the typed invalidation tasks that application code
// enqueues and the worker applies, and their binary-safe payload codec.
//
// # Kinds
//
// Each task type has a fixed kind, used as the asynq task type. Kinds are
// string constants, never derived from Go type names, so a rename never
// strands queued tasks.
//
//   - DeleteKeys, "invalidate:keys": UNLINK exact keys, merged with other
//     tasks' keys by the worker's micro-batcher.
//   - DeleteFamily, "invalidate:family": SCAN MATCH every key of a declared
//     key family whose fixed parameters match, then UNLINK in chunks.
//   - BumpVersion, "invalidate:version": advance a versioned family's version
//     so readers move to fresh keys and the old ones expire.
//   - Event, "invalidate:event": something changed ("product.updated",
//     id=7); the worker's policy turns it into the deletes and bumps above.
//
// Invalidations only remove or advance, never write data, so replaying a task
// (retry, duplicate delivery, dead-letter retry) is harmless.
//
// # The codec
//
// Marshal validates a task and encodes it; Unmarshal decodes and validates.
// The format is binary, not JSON: a key is bytes, and JSON strings replace
// invalid UTF-8 with U+FFFD, which would delete the wrong key. Every byte
// string round-trips exactly, each task has exactly one encoding, and the
// decoder refuses anything it cannot account for (bad magic, truncation,
// lengths past the end, trailing bytes) before allocating for it. The byte
// layout is documented in codec.go.
//
//	payload, err := tasks.Marshal(tasks.DeleteKeys{
//		Keys:       []string{"user:42", "user:42:friends"},
//		EnqueuedAt: time.Now(),
//	})
//	// enqueue.Client does the rest: tasks.NewEnvelope, then Envelope.Asynq
//
//	// in the worker:
//	t, err := tasks.Unmarshal(task.Type(), task.Payload())
//	keys := t.(tasks.DeleteKeys).Keys
//
// Unmarshal's errors sort a task into what to do with it. ErrUnknownKind,
// ErrMalformed and ErrInvalid mark poison: no build can run the task, so the
// worker archives it at once with the reason. ErrNewerFormat does not.
//
// # Envelopes
//
// An Envelope is a task ready for the queue: kind, payload, queue, retries,
// timeout, headers. NewEnvelope encodes a task and addresses it as the
// policy routes its class (with a producer's overrides), and
// Envelope.Asynq turns it into an asynq task and options. Every task the
// module queues, from a producer or from the worker itself (second
// deletes, an event's pattern deletes, scan continuations, dead-letter
// retries), goes through them, so options never differ between sources.
// The task headers the worker sets (Header*) are declared beside the kinds.
//
// # Upgrading the format
//
// Queued and dead-lettered tasks outlive the build that wrote them. Every
// payload carries a format version; a build writes FormatVersion and decodes
// every version up to it. A change to the layout raises FormatVersion and
// keeps the old decoder. Roll it out in this order:
//
//  1. Deploy workers that read the new version everywhere, while producers
//     still write the old one.
//  2. Then deploy producers that write the new version.
//
// If a producer gets ahead anyway, an old worker returns an error wrapping
// ErrNewerFormat ("upgrade the worker"). That task is not poison: the worker
// should let it retry, so a newer worker in the fleet runs it, and an
// operator can replay it from the dead letter after the upgrade.
package tasks
