package cdc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invalidator/invalidator/keyspec"
)

// Target names what Setup, Teardown and Check work on.
type Target struct {
	// Policy gives the tables (its tables section).
	Policy *keyspec.Policy
	// Slot and Publication default as in Config.
	Slot, Publication string
}

func (t Target) withDefaults() (Target, error) {
	if t.Slot == "" {
		t.Slot = DefaultSlot
	}
	if t.Publication == "" {
		t.Publication = DefaultPublication
	}
	switch {
	case !nameRE.MatchString(t.Slot):
		return t, fmt.Errorf("%w: slot name %q: use 1 to 63 lower-case letters, digits and '_'", ErrConfig, t.Slot)
	case !nameRE.MatchString(t.Publication):
		return t, fmt.Errorf("%w: publication name %q: use 1 to 63 lower-case letters, digits and '_'", ErrConfig, t.Publication)
	}
	return t, nil
}

// SetupResult says what Setup did.
type SetupResult struct {
	// PublicationCreated and SlotCreated are false when they existed.
	PublicationCreated bool `json:"publication_created"`
	SlotCreated        bool `json:"slot_created"`
	// TablesAdded are the tables added to the publication.
	TablesAdded []string `json:"tables_added"`
}

// Setup creates the publication of the policy's tables (or adds the
// missing ones to it) and the persistent logical replication slot, then
// checks everything the reader needs (see Check). Running it again is safe.
// A table whose REPLICA IDENTITY does not cover its mapped columns is not
// changed: the error says which ALTER TABLE to run, since a FULL identity
// makes every update and delete write the whole old row to the WAL, a cost
// for the table's owner to accept.
//
// Once the slot exists PostgreSQL keeps the WAL it has not confirmed: run
// invalidator cdc, or Teardown.
func Setup(ctx context.Context, db *pgx.Conn, t Target) (SetupResult, error) {
	var res SetupResult
	t, err := t.withDefaults()
	if err != nil {
		return res, err
	}
	if err := checkWALLevel(ctx, db); err != nil {
		return res, err
	}
	tables := t.Policy.TableNames()
	for _, name := range tables {
		var exists bool
		if err := db.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", ident(t.Policy.Tables[name])).Scan(&exists); err != nil {
			return res, fmt.Errorf("cdc setup: look up table %s: %w", name, err)
		}
		if !exists {
			return res, fmt.Errorf("%w: table %s of the policy's tables section does not exist; create it, or fix the policy", ErrNotSetUp, name)
		}
	}
	var pubExists bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", t.Publication).Scan(&pubExists); err != nil {
		return res, fmt.Errorf("cdc setup: look up publication %s: %w", t.Publication, err)
	}
	if !pubExists {
		list := make([]string, len(tables))
		for i, name := range tables {
			list[i] = ident(t.Policy.Tables[name])
		}
		if _, err := db.Exec(ctx, "CREATE PUBLICATION "+t.Publication+" FOR TABLE "+strings.Join(list, ", ")); err != nil {
			return res, privilegeHint(fmt.Errorf("cdc setup: create publication %s: %w", t.Publication, err))
		}
		res.PublicationCreated = true
	} else {
		missing, err := missingTables(ctx, db, t)
		if err != nil {
			return res, err
		}
		for _, name := range missing {
			if _, err := db.Exec(ctx, "ALTER PUBLICATION "+t.Publication+" ADD TABLE "+ident(t.Policy.Tables[name])); err != nil {
				return res, privilegeHint(fmt.Errorf("cdc setup: add table %s to publication %s: %w", name, t.Publication, err))
			}
			res.TablesAdded = append(res.TablesAdded, name)
		}
	}
	var slotExists bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", t.Slot).Scan(&slotExists); err != nil {
		return res, fmt.Errorf("cdc setup: look up slot %s: %w", t.Slot, err)
	}
	if !slotExists {
		if _, err := db.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", t.Slot); err != nil {
			return res, privilegeHint(fmt.Errorf("cdc setup: create slot %s: %w", t.Slot, err))
		}
		res.SlotCreated = true
	}
	return res, Check(ctx, db, t)
}

// Teardown drops the slot and the publication, those that exist. A slot a
// reader holds is refused: stop every invalidator cdc first.
func Teardown(ctx context.Context, db *pgx.Conn, t Target) (droppedSlot, droppedPublication bool, err error) {
	t, err = t.withDefaults()
	if err != nil {
		return false, false, err
	}
	var pid *int32
	var exists bool
	if err := db.QueryRow(ctx, "SELECT count(*) > 0, max(active_pid) FROM pg_replication_slots WHERE slot_name = $1", t.Slot).Scan(&exists, &pid); err != nil {
		return false, false, fmt.Errorf("cdc teardown: look up slot %s: %w", t.Slot, err)
	}
	if pid != nil {
		return false, false, fmt.Errorf("cdc teardown: slot %s is being read by backend pid %d: stop every invalidator cdc process first", t.Slot, *pid)
	}
	if exists {
		if _, err := db.Exec(ctx, "SELECT pg_drop_replication_slot($1)", t.Slot); err != nil {
			return false, false, privilegeHint(fmt.Errorf("cdc teardown: drop slot %s: %w", t.Slot, err))
		}
		droppedSlot = true
	}
	var pubExists bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", t.Publication).Scan(&pubExists); err != nil {
		return droppedSlot, false, fmt.Errorf("cdc teardown: look up publication %s: %w", t.Publication, err)
	}
	if pubExists {
		if _, err := db.Exec(ctx, "DROP PUBLICATION IF EXISTS "+t.Publication); err != nil {
			return droppedSlot, false, privilegeHint(fmt.Errorf("cdc teardown: drop publication %s: %w", t.Publication, err))
		}
	}
	return droppedSlot, pubExists, nil
}

// Check returns nil when the database is ready for a reader of t: wal_level
// is logical, the publication holds every table of the policy, the slot
// exists and uses pgoutput, and each table's REPLICA IDENTITY covers its
// mapped columns. Every error says how to fix it.
func Check(ctx context.Context, db *pgx.Conn, t Target) error {
	t, err := t.withDefaults()
	if err != nil {
		return err
	}
	if err := checkWALLevel(ctx, db); err != nil {
		return err
	}
	var pubExists bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", t.Publication).Scan(&pubExists); err != nil {
		return fmt.Errorf("cdc: look up publication %s: %w", t.Publication, err)
	}
	if !pubExists {
		return fmt.Errorf("%w: publication %s does not exist; run invalidator cdc setup", ErrNotSetUp, t.Publication)
	}
	missing, err := missingTables(ctx, db, t)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: tables %s of the policy are not in publication %s, so their changes would never be read; run invalidator cdc setup, or ALTER PUBLICATION %s ADD TABLE %s",
			ErrNotSetUp, strings.Join(missing, ", "), t.Publication, t.Publication, strings.Join(missing, ", "))
	}
	var plugin *string
	if err := db.QueryRow(ctx, "SELECT max(plugin) FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()", t.Slot).Scan(&plugin); err != nil {
		return fmt.Errorf("cdc: look up slot %s: %w", t.Slot, err)
	}
	switch {
	case plugin == nil:
		return fmt.Errorf("%w: replication slot %s does not exist in this database; run invalidator cdc setup", ErrNotSetUp, t.Slot)
	case *plugin != "pgoutput":
		return fmt.Errorf("%w: replication slot %s uses plugin %s, not pgoutput; drop it (invalidator cdc teardown) and run invalidator cdc setup, or name another slot", ErrNotSetUp, t.Slot, *plugin)
	}
	var bad []string
	for _, name := range t.Policy.TableNames() {
		tb := t.Policy.Tables[name]
		covered, identity, err := identityColumns(ctx, db, tb)
		if err != nil {
			return err
		}
		var outside []string
		for _, c := range tb.Columns() {
			if covered != nil && !slices.Contains(covered, c) {
				outside = append(outside, c)
			}
		}
		if len(outside) > 0 {
			bad = append(bad, fmt.Sprintf("table %s: columns %s are not in its REPLICA IDENTITY (%s); run ALTER TABLE %s REPLICA IDENTITY FULL (or USING INDEX of a unique index on them)",
				name, strings.Join(outside, ", "), identity, ident(tb)))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: a delete, or an update that moves these columns, could not name the old row's keys: %s", ErrReplicaIdentity, strings.Join(bad, "; "))
	}
	return nil
}

// identityColumns returns the columns of tb's replica identity, nil for
// FULL (every column), and the identity's name.
func identityColumns(ctx context.Context, db *pgx.Conn, tb *keyspec.Table) ([]string, string, error) {
	var ident string
	var cols []string
	err := db.QueryRow(ctx, `SELECT c.relreplident::text, COALESCE((SELECT array_agg(a.attname::text ORDER BY a.attnum)
		FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = c.oid AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))), '{}')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
		tb.Schema, tb.Name).Scan(&ident, &cols)
	if err != nil {
		return nil, "", fmt.Errorf("cdc: look up the replica identity of %s: %w", tb.Qualified(), err)
	}
	if ident == "f" {
		return nil, "FULL", nil
	}
	return cols, identityName(ident[0]), nil
}

// missingTables returns the policy's tables that publication t.Publication
// does not hold.
func missingTables(ctx context.Context, db *pgx.Conn, t Target) ([]string, error) {
	rows, err := db.Query(ctx, "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1", t.Publication)
	if err != nil {
		return nil, fmt.Errorf("cdc: list the tables of publication %s: %w", t.Publication, err)
	}
	have, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("cdc: list the tables of publication %s: %w", t.Publication, err)
	}
	var missing []string
	for _, name := range t.Policy.TableNames() {
		if !slices.Contains(have, name) {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

func checkWALLevel(ctx context.Context, db *pgx.Conn) error {
	var level string
	if err := db.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		return fmt.Errorf("cdc: read wal_level: %w", err)
	}
	if level != "logical" {
		return fmt.Errorf("%w: the server runs with wal_level=%s, and logical replication needs wal_level=logical: run ALTER SYSTEM SET wal_level = logical (or set it in postgresql.conf) and restart PostgreSQL", ErrWALLevel, level)
	}
	return nil
}

// ident quotes tb's name for SQL.
func ident(tb *keyspec.Table) string {
	return pgx.Identifier{tb.Schema, tb.Name}.Sanitize()
}

// privilegeHint adds the fix to a refusal for want of privileges.
func privilegeHint(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return fmt.Errorf("%w: %w (the role needs the REPLICATION attribute for slots, ALTER ROLE <role> REPLICATION, and ownership of the tables or CREATE on the database for the publication)", ErrNoReplication, err)
	}
	return err
}
