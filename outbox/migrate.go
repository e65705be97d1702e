package outbox

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one versioned step of the outbox schema.
type Migration struct {
	// Version numbers the steps from 1; a database records the ones applied.
	Version int
	// Name is the file's name after the version, e.g. "create".
	Name string
	// SQL is the step for one Config: its table names filled in, quoted.
	SQL string
}

// Migrations returns every step of the schema for cfg, oldest first. The SQL
// is what Migrate runs; Script wraps it for a DBA to apply by hand.
func Migrations(cfg Config) ([]Migration, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	ms := make([]Migration, 0, len(names))
	for i, name := range names { // fs.Glob sorts them
		base := strings.TrimSuffix(path.Base(name), ".sql")
		num, label, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v != i+1 {
			return nil, fmt.Errorf("outbox migration file %s: want NNN_name.sql numbered from 001 without gaps", name)
		}
		b, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		sql := strings.NewReplacer("{{table}}", cfg.table(), "{{quarantine}}", cfg.quarantine()).Replace(string(b))
		ms = append(ms, Migration{Version: v, Name: label, SQL: sql})
	}
	return ms, nil
}

// Beginner starts a transaction: *pgxpool.Pool, *pgx.Conn and pgx.Tx are
// Beginners.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Migrate creates the outbox table of cfg, or upgrades it to the newest
// schema, and returns the versions it applied (none when up to date). It
// runs in one transaction under an advisory lock shared by every outbox
// migration of the database, so concurrent Migrates (a fleet of relays
// starting together, several outboxes, one table named with and without
// its schema) apply each step once and a failed step leaves nothing behind.
// Calling it again is safe.
func Migrate(ctx context.Context, db Beginner, cfg Config) ([]int, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ms, err := Migrations(cfg)
	if err != nil {
		return nil, err
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("outbox migrate %s: begin: %w", cfg.table(), err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for _, stmt := range preamble(cfg) {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("outbox migrate %s: %w", cfg.table(), err)
		}
	}
	var current int
	if err := tx.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM "+cfg.ident(cfg.Table+migrationsSuffix)).Scan(&current); err != nil {
		return nil, fmt.Errorf("outbox migrate %s: read the applied version: %w", cfg.table(), err)
	}
	if current > len(ms) {
		return nil, fmt.Errorf("outbox migrate %s: the database is at version %d, newer than this build's %d: upgrade invalidator",
			cfg.table(), current, len(ms))
	}
	var applied []int
	for _, m := range ms[current:] {
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return nil, fmt.Errorf("outbox migrate %s: step %03d %s: %w", cfg.table(), m.Version, m.Name, err)
		}
		if _, err := tx.Exec(ctx, recordSQL(cfg), m.Version, m.Name); err != nil {
			return nil, fmt.Errorf("outbox migrate %s: record step %03d: %w", cfg.table(), m.Version, err)
		}
		applied = append(applied, m.Version)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("outbox migrate %s: commit: %w", cfg.table(), err)
	}
	return applied, nil
}

// preamble takes the migration lock (released at commit) and makes sure the
// schema and the migration record exist.
func preamble(cfg Config) []string {
	stmts := []string{
		// One lock for every outbox migration of the database, whatever
		// the table: a per-name lock let "p" and "public"."p" (one table,
		// two spellings), or two tables in one new schema, migrate at once,
		// and CREATE ... IF NOT EXISTS is not safe against itself (a
		// duplicate pg_type or pg_namespace row). Migrations are rare and
		// short, so serializing them all costs nothing.
		"SELECT pg_advisory_xact_lock(hashtextextended('invalidator outbox migrate', 0))",
	}
	if cfg.Schema != "" {
		stmts = append(stmts, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{cfg.Schema}.Sanitize())
	}
	return append(stmts, "CREATE TABLE IF NOT EXISTS "+cfg.ident(cfg.Table+migrationsSuffix)+` (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`)
}

func recordSQL(cfg Config) string {
	return "INSERT INTO " + cfg.ident(cfg.Table+migrationsSuffix) + " (version, name) VALUES ($1, $2)"
}

// Script returns the SQL that brings the outbox of cfg from version after
// (0: no outbox yet) to the newest, as one transaction, for a DBA who
// applies schema changes by hand: psql -v ON_ERROR_STOP=1 -f FILE (not -1:
// the script has its own BEGIN and COMMIT, and without ON_ERROR_STOP psql
// goes on past a failed step and exits 0). It takes the same lock and keeps
// the same record as Migrate, so the two can be mixed, and it first checks
// that the database is at version after: applied to another version it
// fails, changing nothing.
func Script(cfg Config, after int) (string, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return "", err
	}
	ms, err := Migrations(cfg)
	if err != nil {
		return "", err
	}
	if after < 0 || after > len(ms) {
		return "", fmt.Errorf("outbox script: version %d is not between 0 and %d", after, len(ms))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "-- invalidator outbox schema for %s, version %d to %d.\nBEGIN;\n", cfg.table(), after, len(ms))
	for _, stmt := range preamble(cfg) {
		b.WriteString(stmt + ";\n")
	}
	b.WriteString(versionCheck(cfg, after))
	for _, m := range ms[after:] {
		fmt.Fprintf(&b, "\n%s\nINSERT INTO %s (version, name) VALUES (%d, %s);\n",
			strings.TrimSpace(m.SQL), cfg.ident(cfg.Table+migrationsSuffix), m.Version, quoteLiteral(m.Name))
	}
	b.WriteString("COMMIT;\n")
	return b.String(), nil
}

// versionCheck is a DO block that raises unless the outbox of cfg is at
// version want, so a script for one version applied to another fails
// before it changes anything.
func versionCheck(cfg Config, want int) string {
	record := cfg.ident(cfg.Table + migrationsSuffix)
	body := fmt.Sprintf(`
DECLARE v integer := 0;
BEGIN
    IF to_regclass(%[1]s) IS NOT NULL THEN
        EXECUTE 'SELECT COALESCE(max(version), 0) FROM ' || %[1]s INTO v;
    END IF;
    IF v <> %[2]d THEN
        RAISE EXCEPTION 'outbox %%: the database is at version %%, this script upgrades from version %[2]d: print it with outbox migrate --print --from %%', %[3]s, v, v;
    END IF;
END
`, quoteLiteral(record), want, quoteLiteral(cfg.table()))
	tag := "$check$" // dollar quoting; a tag the body (names included) does not hold
	for strings.Contains(body, tag) {
		tag = tag[:len(tag)-1] + "x$"
	}
	return "DO " + tag + body + tag + ";\n"
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
