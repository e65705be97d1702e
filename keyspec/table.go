package keyspec

import (
	"maps"
	"slices"
)

// Table maps the row changes of one database table to an event of the
// policy (the policy file's tables section), for invalidator cdc, which
// reads them from PostgreSQL's write-ahead log. An insert publishes the event
// for the new row, a delete for the old row, and an update for the new row
// and, when a mapped column changed, for the old row too: a price moved to
// another product invalidates both products. A TRUNCATE names no rows: it
// invalidates every key of every family the event invalidates.
type Table struct {
	// Schema and Name name the table as PostgreSQL does (case-sensitive,
	// unquoted): the policy key "public.products" is Schema "public", Name
	// "products".
	Schema, Name string
	// Event is the event published for each row change; it is declared
	// under events.
	Event string
	// Attributes maps every attribute of the event to the column that gives
	// its value (as the column's text form).
	Attributes map[string]string
}

// Qualified returns schema.name, the table's key in the policy file.
func (t *Table) Qualified() string { return t.Schema + "." + t.Name }

// Columns returns the columns the mapping reads, sorted, each once. A
// delete, and an update that changes one of them, needs them in the old row,
// so the table's REPLICA IDENTITY must cover them (FULL, or an index on
// them).
func (t *Table) Columns() []string {
	cols := slices.Collect(maps.Values(t.Attributes))
	slices.Sort(cols)
	return slices.Compact(cols)
}

// TableNames returns the qualified names of the tables section, sorted.
func (p *Policy) TableNames() []string {
	return slices.Sorted(maps.Keys(p.Tables))
}
