package keyspec

import "time"

// Compare modes of an audit section.
const (
	// AuditCompareJSON compares the cached and source values as JSON
	// values (key order, white space and number spelling aside),
	// optionally only on some top-level fields. The default.
	AuditCompareJSON = "json"
	// AuditCompareBytes compares them byte for byte.
	AuditCompareBytes = "bytes"
)

// DefaultRecheckAfter is an audit's re-check delay when neither the audit
// section nor its class's second_delete says otherwise.
const DefaultRecheckAfter = time.Second

// Audit is a family's audit section: a SQL query that reads the source of
// truth of one key, so `invalidator audit` can compare the cache with it
// without application code.
type Audit struct {
	// Query returns one column (text, json, jsonb or bytea) of at most one
	// row for a key; no row means the entity does not exist. Its @name
	// placeholders are template parameters, bound as pgx named arguments.
	Query string
	// Params are the placeholders of Query, in order of first use.
	Params []string
	// Compare is AuditCompareJSON or AuditCompareBytes.
	Compare string
	// Fields restricts a JSON comparison to these top-level fields; empty
	// means the whole value.
	Fields []string
	// RecheckAfter is how long a differing key waits before it is read
	// again on both sides. Resolved at load: the section's recheck_after,
	// else the class's second_delete plus 1s (asynq schedules the second
	// delete up to a second late), else DefaultRecheckAfter. 0 re-checks
	// at once.
	RecheckAfter time.Duration
}
