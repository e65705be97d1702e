package outbox

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// DefaultTable is the outbox table's name when Config.Table is empty.
const DefaultTable = "invalidator_outbox"

// maxIdentifierBytes is PostgreSQL's NAMEDATALEN - 1: longer names are
// silently truncated by the server, so they are refused here.
const maxIdentifierBytes = 63

// Config names the outbox table. Writers, relays and Migrate of one outbox
// must share it. Zero values take the documented defaults.
type Config struct {
	// Schema holds the table. Default: "", the connection's search_path
	// (usually public). Set it when the table's name exists in more than
	// one schema (an outbox per tenant schema): a writer whose search_path
	// differs from the relay's would write where the relay never reads, so
	// a relay with no Schema refuses to run then (ErrAmbiguousTable).
	Schema string
	// Table is the outbox table. Its migration record is the table
	// Table+"_migrations" in the same schema, and the rows the relay
	// refuses go to Table+"_quarantine". Default: "invalidator_outbox".
	Table string
	// Channel is the LISTEN/NOTIFY channel a write wakes the relays on.
	// Default: the table name.
	Channel string
}

// ErrConfig is wrapped by every error about a Config.
var ErrConfig = errors.New("outbox config")

// withDefaults returns cfg with defaults applied, or an error for a name
// PostgreSQL would truncate or cannot hold.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.Channel == "" {
		cfg.Channel = cfg.Table
	}
	for _, f := range []struct{ what, v string }{
		{"schema", cfg.Schema}, {"table", cfg.Table + migrationsSuffix}, {"channel", cfg.Channel},
	} {
		if len(f.v) > maxIdentifierBytes {
			return cfg, fmt.Errorf("%w: %s name %q is longer than PostgreSQL's %d bytes", ErrConfig, f.what, f.v, maxIdentifierBytes)
		}
		if strings.ContainsRune(f.v, 0) {
			return cfg, fmt.Errorf("%w: %s name %q holds a NUL byte", ErrConfig, f.what, f.v)
		}
	}
	return cfg, nil
}

// migrationsSuffix names the migration record table after the outbox table.
const migrationsSuffix = "_migrations"

// ident quotes name, qualified with the schema if there is one. Quoting
// makes any name safe in SQL text, and keeps its case.
func (cfg Config) ident(name string) string {
	if cfg.Schema == "" {
		return pgx.Identifier{name}.Sanitize()
	}
	return pgx.Identifier{cfg.Schema, name}.Sanitize()
}

// table is the quoted, qualified outbox table.
func (cfg Config) table() string { return cfg.ident(cfg.Table) }

// quarantineSuffix names the table of rows the relay refused after the
// outbox table; it is no longer than migrationsSuffix, whose length
// withDefaults checks.
const quarantineSuffix = "_quarantine"

// quarantine is the quoted, qualified quarantine table.
func (cfg Config) quarantine() string { return cfg.ident(cfg.Table + quarantineSuffix) }
