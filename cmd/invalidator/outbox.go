package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/invalidator/invalidator/outbox"
)

// envOutboxDSN is read when --dsn (or the worker's --outbox-dsn) is not
// given. A DSN may hold a password: an environment file keeps it off the
// command line, where ps shows it.
const envOutboxDSN = "INVALIDATOR_OUTBOX_DSN"

// pgConnectTimeout bounds the first connection and ping of a command.
const pgConnectTimeout = 5 * time.Second

// outboxFlags name the outbox table; migrate, status, relay and the worker
// share them.
type outboxFlags struct {
	dsn    string
	schema string
	table  string
}

// register adds the flags, with prefix before each name ("outbox-" on the
// worker, whose own flags would clash).
func (o *outboxFlags) register(f *pflag.FlagSet, prefix string) {
	f.StringVar(&o.dsn, prefix+"dsn", "", "PostgreSQL DSN of the database holding the outbox, postgres://user@host:5432/db or key=value form (env "+envOutboxDSN+"; put a password there, not on the command line)")
	f.StringVar(&o.schema, prefix+"schema", "", "schema of the outbox table (default: the connection's search_path, usually public)")
	f.StringVar(&o.table, prefix+"table", outbox.DefaultTable, "outbox table; its migration record is <table>_migrations")
}

func (o *outboxFlags) config() outbox.Config {
	return outbox.Config{Schema: o.schema, Table: o.table}
}

// connectOutbox connects to the outbox's database: the DSN of --dsn (flag)
// or of the environment.
func (a *app) connectOutbox(ctx context.Context, flag string) (*pgxpool.Pool, error) {
	dsn := a.env(flag, envOutboxDSN, "")
	if dsn == "" {
		return nil, usagef("no PostgreSQL DSN: set --dsn or %s", envOutboxDSN)
	}
	return a.openOutboxDB(ctx, dsn)
}

// openOutboxDB connects to dsn and pings it. The DSN's password never
// appears in an error: pgx's parse errors echo their input, so they are
// replaced, and every other error is scrubbed of the password.
func (a *app) openOutboxDB(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, usagef("PostgreSQL DSN does not parse; use postgres://user@host:5432/db or the key=value form")
	}
	where := fmt.Sprintf("PostgreSQL at %s:%d", cfg.ConnConfig.Host, cfg.ConnConfig.Port)
	pw := cfg.ConnConfig.Password
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, scrub(fmt.Errorf("%s: %w", where, err), pw)
	}
	pctx, cancel := context.WithTimeout(ctx, pgConnectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, pgConnectError(scrub(fmt.Errorf("%s: %w", where, err), pw))
	}
	return pool, nil
}

// pgConnectError classifies a failure to connect to PostgreSQL for the exit
// code, as the Redis equivalents are: a server that refused the DSN's
// credentials or has no such database is a usage error (exit 2: fix the
// settings), another answer from the server a failure (exit 1), and no
// answer unreachable (exit 3).
func pgConnectError(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return &unreachableError{err}
	}
	switch pgErr.Code {
	case "28P01", "28000", "3D000": // invalid_password, invalid_authorization_specification, invalid_catalog_name
		return &usageError{err}
	}
	return err
}

// scrub hides secret in err's message, keeping err's chain for errors.As.
func scrub(err error, secret string) error {
	if secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &scrubbedError{err: err, msg: strings.ReplaceAll(err.Error(), secret, "xxxxx")}
}

type scrubbedError struct {
	err error
	msg string
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

func newOutboxCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "outbox",
		Short: "Create, upgrade and inspect the PostgreSQL outbox table",
		Long: `The outbox table holds invalidations that application code wrote inside its
own transactions (package outbox); invalidator relay moves them to the queues.
See README "Lossless enqueue".`,
		Args: noArgs,
	}
	cmd.AddCommand(newOutboxMigrateCmd(a), newOutboxStatusCmd(a))
	return cmd
}

type migrateOpts struct {
	outboxFlags
	print  bool
	from   int
	asJSON bool
}

func newOutboxMigrateCmd(a *app) *cobra.Command {
	o := &migrateOpts{}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create the outbox table or upgrade it to this build's schema",
		Long: `Create the outbox table, or upgrade it to the newest schema of this build, in
one transaction under an advisory lock: running it again, or from many hosts
at once, is safe. Each applied version is recorded in <table>_migrations.

--print writes the same SQL to stdout instead, for a DBA who applies schema
changes by hand; it takes the same lock and keeps the same record, so the
two ways can be mixed. --from N prints only the steps after version N (see
outbox status); the script first checks that the database is at version N
and fails otherwise. Apply it with exactly

  psql -v ON_ERROR_STOP=1 -f outbox.sql

not with -1 (the script is its own transaction), and never without
ON_ERROR_STOP: psql would go on past a failed step and exit 0.`,
		Example: `  INVALIDATOR_OUTBOX_DSN=postgres://app@db:5432/shop invalidator outbox migrate
  invalidator outbox migrate --print --schema ops > outbox.sql`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := o.config()
			if _, err := outbox.Migrations(cfg); err != nil {
				return &usageError{err}
			}
			if o.print {
				sql, err := outbox.Script(cfg, o.from)
				if err != nil {
					return &usageError{err}
				}
				_, err = fmt.Fprint(cmd.OutOrStdout(), sql)
				return err
			}
			if cmd.Flags().Changed("from") {
				return usagef("--from goes with --print")
			}
			ctx := cmd.Context()
			pool, err := a.connectOutbox(ctx, o.dsn)
			if err != nil {
				return err
			}
			defer pool.Close()
			applied, err := outbox.Migrate(ctx, pool, cfg)
			if err != nil {
				return err
			}
			ms, _ := outbox.Migrations(cfg)
			if o.asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(struct {
					Applied []int `json:"applied"`
					Version int   `json:"version"`
				}{append([]int{}, applied...), len(ms)})
			}
			if len(applied) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "outbox %s: up to date (version %d)\n", qualified(cfg), len(ms))
				return nil
			}
			for _, v := range applied {
				fmt.Fprintf(cmd.OutOrStdout(), "outbox %s: applied version %d (%s)\n", qualified(cfg), v, ms[v-1].Name)
			}
			return nil
		},
	}
	f := cmd.Flags()
	o.register(f, "")
	f.BoolVar(&o.print, "print", false, "print the SQL instead of applying it (no database needed)")
	f.IntVar(&o.from, "from", 0, "with --print: the version the database is at (0: no outbox yet)")
	f.BoolVar(&o.asJSON, "json", false, `print {"applied":[...],"version":N}`)
	return cmd
}

// qualified names the table of cfg for people: schema.table.
func qualified(cfg outbox.Config) string {
	if cfg.Schema == "" {
		return cfg.Table
	}
	return cfg.Schema + "." + cfg.Table
}

type outboxStatus struct {
	Table         string  `json:"table"`
	Version       int     `json:"version"`        // applied; 0: no outbox
	LatestVersion int     `json:"latest_version"` // of this build
	Depth         int64   `json:"depth"`
	OldestAgeSecs float64 `json:"oldest_row_age_seconds"`
	// Quarantined counts the rows the relay refused (<table>_quarantine).
	Quarantined int64 `json:"quarantined"`
}

func newOutboxStatusCmd(a *app) *cobra.Command {
	o := &outboxFlags{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the outbox's schema version, depth, oldest row age and quarantined rows",
		Long: `Show the outbox table's schema version (against this build's), its depth
(committed rows not yet relayed), the age of its oldest row, and the rows the
relay quarantined (in <table>_quarantine: no queue would take them, so their
invalidations did not run; README "Lossless enqueue" says how to re-drive
them). Exits 1 when the schema is missing or older than this build's: run
outbox migrate.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := o.config()
			ms, err := outbox.Migrations(cfg)
			if err != nil {
				return &usageError{err}
			}
			ctx := cmd.Context()
			pool, err := a.connectOutbox(ctx, o.dsn)
			if err != nil {
				return err
			}
			defer pool.Close()
			st, err := readStatus(ctx, pool, cfg)
			if err != nil {
				return err
			}
			st.LatestVersion = len(ms)
			if asJSON {
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(st); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "table:          %s\nschema version: %d (this build: %d)\ndepth:          %d rows\noldest row:     %s\nquarantined:    %d rows\n",
					st.Table, st.Version, st.LatestVersion, st.Depth, time.Duration(st.OldestAgeSecs*float64(time.Second)).Round(time.Millisecond),
					st.Quarantined)
			}
			if st.Version < st.LatestVersion {
				return fmt.Errorf("outbox %s is at schema version %d, this build needs %d: run invalidator outbox migrate", st.Table, st.Version, st.LatestVersion)
			}
			return nil
		},
	}
	o.register(cmd.Flags(), "")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as one JSON object")
	return cmd
}

// readStatus reads the applied version, depth and oldest row age of cfg's
// table; a table not created yet is version 0.
func readStatus(ctx context.Context, pool *pgxpool.Pool, cfg outbox.Config) (outboxStatus, error) {
	ident := func(name string) string {
		if cfg.Schema == "" {
			return pgx.Identifier{name}.Sanitize()
		}
		return pgx.Identifier{cfg.Schema, name}.Sanitize()
	}
	st := outboxStatus{Table: qualified(cfg)}
	var record, table *string
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1)::text, to_regclass($2)::text",
		ident(cfg.Table+"_migrations"), ident(cfg.Table)).Scan(&record, &table); err != nil {
		return st, fmt.Errorf("outbox status %s: %w", st.Table, err)
	}
	if record == nil || table == nil {
		return st, nil
	}
	if err := pool.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM "+ident(cfg.Table+"_migrations")).Scan(&st.Version); err != nil {
		return st, fmt.Errorf("outbox status %s: read the schema version: %w", st.Table, err)
	}
	if err := pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM "+ident(cfg.Table)+"),"+
		" COALESCE((SELECT extract(epoch FROM clock_timestamp() - created_at)::float8 FROM "+ident(cfg.Table)+" ORDER BY id LIMIT 1), 0)").
		Scan(&st.Depth, &st.OldestAgeSecs); err != nil {
		return st, fmt.Errorf("outbox status %s: %w", st.Table, err)
	}
	var quarantine *string // absent before schema version 2
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1)::text", ident(cfg.Table+"_quarantine")).Scan(&quarantine); err != nil {
		return st, fmt.Errorf("outbox status %s: %w", st.Table, err)
	}
	if quarantine != nil {
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+ident(cfg.Table+"_quarantine")).Scan(&st.Quarantined); err != nil {
			return st, fmt.Errorf("outbox status %s: count quarantined rows: %w", st.Table, err)
		}
	}
	return st, nil
}
