package keyspec

import (
	"fmt"
	"time"
)

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

// MinAuditEvery is the shortest audit_every a policy accepts: a scheduled
// audit reads the cache and the source, so it must not run hot.
const MinAuditEvery = time.Minute

// MaxAuditSample caps audit_sample: one run compares at most this many keys.
const MaxAuditSample = 100000

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
	// Every is how often the worker fleet audits the family, once per
	// period across the fleet: the family's audit_every, else its class's.
	// 0 means no scheduled audit.
	Every time.Duration
	// Sample is how many keys a scheduled audit compares at most: the
	// family's audit_sample, else its class's. 0 means the auditor's
	// default.
	Sample int
}

func checkAuditEvery(v time.Duration) string {
	if v != 0 && v < MinAuditEvery {
		return fmt.Sprintf("audit_every %s is below %s; audit at most once a minute (e.g. 1h), or 0 for no scheduled audit", v, MinAuditEvery)
	}
	return ""
}

func checkAuditSample(n int) string {
	if n < 1 || n > MaxAuditSample {
		return fmt.Sprintf("audit_sample %d is out of range; use 1 to %d keys per run", n, MaxAuditSample)
	}
	return ""
}
