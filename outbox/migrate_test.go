package outbox_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/outbox"
)

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	applied, err := outbox.Migrate(ctx, db.Pool, outbox.Config{})
	require.NoError(t, err)
	require.Equal(t, []int{1, 2}, applied)
	applied, err = outbox.Migrate(ctx, db.Pool, outbox.Config{})
	require.NoError(t, err)
	require.Empty(t, applied, "an up-to-date outbox is left alone")

	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM invalidator_outbox_migrations`).Scan(&n))
	require.Equal(t, 2, n)
}

// Relays of a fleet that start together all migrate; each step runs once.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	cfg := outbox.Config{Schema: "inv"} // CREATE SCHEMA too must not race
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total []int
	)
	for range 8 {
		wg.Go(func() {
			applied, err := outbox.Migrate(ctx, db.Pool, cfg)
			require.NoError(t, err)
			mu.Lock()
			total = append(total, applied...)
			mu.Unlock()
		})
	}
	wg.Wait()
	require.Equal(t, []int{1, 2}, total, "exactly one Migrate applied each step")
}

// The schema and the table are configurable, and any name is quoted.
func TestConfigurableSchemaAndTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := outbox.Config{Schema: `App "Data"`, Table: `Inv; DROP TABLE items --`}
	b := setupWith(t, cfg, nil)
	var exists bool
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = $2)`,
		cfg.Schema, cfg.Table).Scan(&exists))
	require.True(t, exists)
	b.inTx(t, func(tx pgx.Tx) error { return b.w.DeleteKeys(ctx, outbox.Pgx(tx), "k") })
	require.Equal(t, 1, b.rows(t))
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_tables WHERE tablename = 'invalidator_outbox')`).Scan(&exists))
	require.False(t, exists, "nothing lands in the default table")

	_, err := outbox.NewWriter(nil, cfg)
	require.Error(t, err)
	_, err = outbox.Migrate(ctx, b.db.Pool, outbox.Config{Table: strings.Repeat("t", 60)})
	require.ErrorIs(t, err, outbox.ErrConfig, "the migration table's name would be truncated")
}

// The script a DBA applies by hand builds the same schema, and Migrate then
// finds it up to date.
func TestScriptMatchesMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	cfg := outbox.Config{Schema: "ops", Table: "inv_outbox"}
	script, err := outbox.Script(cfg, 0)
	require.NoError(t, err)
	require.Contains(t, script, `CREATE TABLE "ops"."inv_outbox"`)
	require.Contains(t, script, "pg_advisory_xact_lock")
	// Simple protocol: several statements in one Exec, as psql would send them.
	_, err = db.Pool.Exec(ctx, script, pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	applied, err := outbox.Migrate(ctx, db.Pool, cfg)
	require.NoError(t, err)
	require.Empty(t, applied)

	_, err = outbox.Script(cfg, 3)
	require.Error(t, err)
	up, err := outbox.Script(cfg, 1)
	require.NoError(t, err)
	require.NotContains(t, up, "CREATE TABLE \"ops\".\"inv_outbox\" (", "nothing to do past the newest version")
}

// Version 2 upgrades a live version-1 table that already holds a row its
// new CHECKs refuse (NOT VALID: it is kept); the relay quarantines it.
func TestUpgradeKeepsRowsTheNewChecksRefuse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	ms, err := outbox.Migrations(outbox.Config{})
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `CREATE TABLE invalidator_outbox_migrations (version integer PRIMARY KEY, name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, ms[0].SQL)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO invalidator_outbox_migrations (version, name) VALUES (1, 'create')`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO invalidator_outbox (kind, payload, queue, max_retry, timeout_ms)
		VALUES ('invalidate:keys', '\x00', ' ', 0, 0)`)
	require.NoError(t, err)

	applied, err := outbox.Migrate(ctx, db.Pool, outbox.Config{})
	require.NoError(t, err)
	require.Equal(t, []int{2}, applied)
	b := &bundle{db: db, queue: redistest.NewDB(t).Client}
	_, err = b.relay(t, nil).Drain(ctx)
	require.NoError(t, err)
	require.Zero(t, b.rows(t))
	var reason string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT reason FROM invalidator_outbox_quarantine`).Scan(&reason))
	require.Equal(t, "blank queue", reason)
}

// Concurrent Migrates of one table spelled with and without its schema, and
// of several tables in one new schema, each apply once and none fails (a
// lock per spelled name let them race on CREATE ... IF NOT EXISTS).
func TestConcurrentMigrateOfTablesSharingASchemaOrASpelling(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	for round := range 10 {
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			cfg := outbox.Config{Schema: fmt.Sprint("s", round), Table: fmt.Sprint("t", i)}
			if i%2 == 1 { // one table, named through the search_path
				cfg = outbox.Config{Table: fmt.Sprint("p", round)}
			} else if i == 2 { // and with its schema
				cfg = outbox.Config{Schema: "public", Table: fmt.Sprint("p", round)}
			}
			wg.Go(func() { _, errs[i] = outbox.Migrate(ctx, db.Pool, cfg) })
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "round %d migrate %d", round, i)
		}
	}
}

// psql finds the psql client, on PATH or where Debian's postgresql
// package puts it.
func psql(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("psql"); err == nil {
		return p
	}
	ps, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
	if len(ps) == 0 {
		t.Skip("no psql")
	}
	return ps[len(ps)-1]
}

// The printed script, applied the way the README says (psql -v
// ON_ERROR_STOP=1 -f), upgrades a database at its --from version, and
// fails loudly, changing nothing, on a database at another version.
func TestScriptUnderPsqlFailsOnTheWrongVersion(t *testing.T) {
	t.Parallel()
	bin := psql(t)
	ctx := context.Background()
	db := pgtest.NewDB(t)
	apply := func(from int) (string, error) {
		script, err := outbox.Script(outbox.Config{}, from)
		require.NoError(t, err)
		f := filepath.Join(t.TempDir(), "outbox.sql")
		require.NoError(t, os.WriteFile(f, []byte(script), 0o600))
		out, err := exec.Command(bin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", f, db.DSN).CombinedOutput()
		return string(out), err
	}
	out, err := apply(1)
	require.Error(t, err, "a script from version 1 on an empty database fails; psql printed:\n%s", out)
	require.Contains(t, out, "the database is at version 0, this script upgrades from version 1")
	out, err = apply(0)
	require.NoError(t, err, out)
	out, err = apply(0)
	require.Error(t, err, "the same script again fails; psql printed:\n%s", out)
	require.Contains(t, out, "the database is at version 2")
	applied, err := outbox.Migrate(ctx, db.Pool, outbox.Config{})
	require.NoError(t, err)
	require.Empty(t, applied, "the script left the database at the newest version")
}
