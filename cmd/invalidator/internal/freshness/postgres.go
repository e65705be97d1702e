package freshness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invalidator/invalidator/outbox"
)

// pgTable holds the rows of every run, keyed by the run's id, so runs
// against one database never see each other's rows.
const pgTable = "invalidator_freshness_rows"

// Postgres is a Source in a PostgreSQL table: the checker's writes then
// really commit, and its loaders really read, so the check covers a
// database's commit visibility too, not only an in-memory map. With it the
// checker writes each invalidation through the transactional outbox, in
// the write's own transaction, and relays it in-process: the lossless path
// is the one checked.
type Postgres struct {
	pool   *pgxpool.Pool
	run    string
	outbox outbox.Config // this run's, dropped by Close
}

// OpenPostgres connects to the database at dsn, creates the rows table if
// needed and migrates an outbox table of the run's own
// (invalidator_freshness_outbox_<run>, dropped by Close, so runs never
// relay each other's rows to the wrong Redis). The DSN, which may hold a
// password, never appears in errors.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("postgres source: the DSN does not parse; use postgres://user@host:5432/db or key=value form")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres source: connect to %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+pgTable+` (
		run text NOT NULL, row text NOT NULL, version bigint NOT NULL,
		PRIMARY KEY (run, row))`); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres source: create table %s on %s:%d: %w", pgTable, cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	p := &Postgres{pool: pool, run: hex.EncodeToString(id[:])}
	p.outbox = outbox.Config{Table: "invalidator_freshness_outbox_" + p.run}
	if _, err := outbox.Migrate(ctx, pool, p.outbox); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres source on %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return p, nil
}

// Read implements Source.
func (p *Postgres) Read(ctx context.Context, row string) (int64, error) {
	var v int64
	err := p.pool.QueryRow(ctx, `SELECT version FROM `+pgTable+` WHERE run = $1 AND row = $2`, p.run, row).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("postgres source: read %s: %w", row, err)
	}
	return v, nil
}

// Write implements Source: committed when it returns.
func (p *Postgres) Write(ctx context.Context, row string) (int64, error) {
	return p.writeTx(ctx, row, nil)
}

// writeTx advances row in a transaction, calls also (when not nil) inside
// it, and commits: the row and whatever also wrote (the outbox row of its
// invalidation) commit together or not at all.
func (p *Postgres) writeTx(ctx context.Context, row string, also func(*outbox.PgxTx) error) (int64, error) {
	// An outbox transaction, whose writes ride its COMMIT: the write path
	// the outbox recommends is the one checked.
	tx, err := outbox.BeginPgx(ctx, p.pool, pgx.TxOptions{})
	if err != nil {
		return 0, fmt.Errorf("postgres source: write %s: begin: %w", row, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a no-op after the commit
	var v int64
	err = tx.QueryRow(ctx, `INSERT INTO `+pgTable+` (run, row, version) VALUES ($1, $2, 1)
		ON CONFLICT (run, row) DO UPDATE SET version = `+pgTable+`.version + 1
		RETURNING version`, p.run, row).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("postgres source: write %s: %w", row, err)
	}
	if also != nil {
		if err := also(tx); err != nil {
			return 0, fmt.Errorf("postgres source: write %s: %w", row, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("postgres source: write %s: commit: %w", row, err)
	}
	return v, nil
}

// Close deletes this run's rows, drops its outbox and closes the pool.
func (p *Postgres) Close(ctx context.Context) error {
	defer p.pool.Close()
	var errs []error
	if _, err := p.pool.Exec(ctx, `DELETE FROM `+pgTable+` WHERE run = $1`, p.run); err != nil {
		errs = append(errs, fmt.Errorf("postgres source: clean up run %s: %w", p.run, err))
	}
	for _, t := range []string{p.outbox.Table, p.outbox.Table + "_migrations", p.outbox.Table + "_quarantine"} {
		if _, err := p.pool.Exec(ctx, `DROP TABLE IF EXISTS `+pgx.Identifier{t}.Sanitize()); err != nil {
			errs = append(errs, fmt.Errorf("postgres source: drop the run's outbox %s: %w", t, err))
		}
	}
	return errors.Join(errs...)
}
