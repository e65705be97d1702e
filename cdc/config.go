package cdc

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/keyspec"
)

// Defaults of Config fields left zero.
const (
	DefaultSlot             = "invalidator"
	DefaultPublication      = "invalidator"
	DefaultMaxPending       = 10000
	DefaultFlushWait        = 500 * time.Microsecond
	DefaultStatusInterval   = 5 * time.Second
	DefaultStatsInterval    = 10 * time.Second
	DefaultTakeoverInterval = time.Second
	DefaultRetryMin         = 100 * time.Millisecond
	DefaultRetryMax         = 5 * time.Second
)

// Sentinel errors. Each is wrapped with what to do about it.
var (
	// ErrConfig means a Config is unusable.
	ErrConfig = errors.New("cdc: invalid config")
	// ErrWALLevel means the server's wal_level is not logical.
	ErrWALLevel = errors.New("wal_level is not logical")
	// ErrNoReplication means the role may not open a replication
	// connection (no REPLICATION attribute, or pg_hba.conf refuses it).
	ErrNoReplication = errors.New("replication connection refused")
	// ErrNotSetUp means the publication or the slot is missing, or a table
	// of the policy is not in the publication.
	ErrNotSetUp = errors.New("cdc is not set up")
	// ErrReplicaIdentity means a table's REPLICA IDENTITY does not cover
	// its mapped columns: a delete could not name its keys.
	ErrReplicaIdentity = errReplicaIdentity
)

// nameRE is what a slot name may hold (PostgreSQL's rule) and what this
// package allows in a publication name, so both go into SQL and the
// replication protocol without quoting.
var nameRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Config configures a Reader. Zero values take the documented defaults.
type Config struct {
	// DSN is the database's connection string (URL or key=value). The
	// reader adds replication=database for its stream; its role needs the
	// REPLICATION attribute and SELECT on the tables. Required.
	DSN string
	// Policy maps tables to events (its tables section). Required, with
	// at least one table.
	Policy *keyspec.Policy
	// Queue is the queue Redis the events go to. Required.
	Queue redis.UniversalClient
	// Target is the cache target the events name ("" for the default).
	Target string

	// Slot is the logical replication slot. Default: "invalidator".
	Slot string
	// Publication is the publication of the policy's tables. Default:
	// "invalidator".
	Publication string
	// MaxPending bounds the events held in memory before they are
	// enqueued: the reader enqueues them once that many are pending, even in
	// the middle of a transaction (pgoutput sends a transaction only after
	// its commit, so every change it sends is committed), and confirms the
	// transaction only once all of its events are enqueued. Default: 10000.
	MaxPending int
	// FlushWait is how long the reader waits for more of the stream before
	// it enqueues what it holds: events of transactions that arrive within
	// it share the enqueue. Default: 500µs.
	FlushWait time.Duration
	// StatusInterval is how often an idle reader confirms its position to
	// PostgreSQL (standby status update); it also answers every keepalive
	// that asks. Must be under the server's wal_sender_timeout (60s).
	// Default: 5s.
	StatusInterval time.Duration
	// StatsInterval is how often the slot's retained WAL and lag are
	// sampled for the metrics; negative turns sampling off. Default: 10s.
	StatsInterval time.Duration
	// TakeoverInterval is how often a standby tries the slot while another
	// process reads it. Default: 1s.
	TakeoverInterval time.Duration
	// RetryMin and RetryMax bound the wait after a failure (PostgreSQL or
	// the queue Redis down); it doubles per failure. Defaults: 100ms, 5s.
	RetryMin, RetryMax time.Duration

	// Logger receives the reader's logs. Default: slog.Default().
	Logger *slog.Logger
	// Metrics receives its metrics (NewMetrics). Default: nil, none.
	Metrics *Metrics
}

func (cfg *Config) withDefaults() (Config, error) {
	c := *cfg
	if c.Slot == "" {
		c.Slot = DefaultSlot
	}
	if c.Publication == "" {
		c.Publication = DefaultPublication
	}
	switch {
	case c.DSN == "":
		return c, fmt.Errorf("%w: no DSN", ErrConfig)
	case c.Policy == nil || len(c.Policy.Tables) == 0:
		return c, fmt.Errorf("%w: the policy has no tables section; map at least one table to an event (README \"Invalidation from the write-ahead log\")", ErrConfig)
	case !nameRE.MatchString(c.Slot):
		return c, fmt.Errorf("%w: slot name %q: use 1 to 63 lower-case letters, digits and '_'", ErrConfig, c.Slot)
	case !nameRE.MatchString(c.Publication):
		return c, fmt.Errorf("%w: publication name %q: use 1 to 63 lower-case letters, digits and '_'", ErrConfig, c.Publication)
	}
	if _, err := pgconn.ParseConfig(c.DSN); err != nil {
		// pgx echoes the DSN, password included: say less.
		return c, fmt.Errorf("%w: the DSN does not parse; use postgres://user@host:5432/db or the key=value form", ErrConfig)
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.FlushWait <= 0 {
		c.FlushWait = DefaultFlushWait
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = DefaultStatusInterval
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = DefaultStatsInterval
	}
	if c.TakeoverInterval <= 0 {
		c.TakeoverInterval = DefaultTakeoverInterval
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(DefaultRetryMax, c.RetryMin)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
