package freshness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgTable holds the rows of every run, keyed by the run's id, so runs
// against one database never see each other's rows.
const pgTable = "invalidator_freshness_rows"

// Postgres is a Source in a PostgreSQL table: the checker's writes then
// really commit, and its loaders really read, so the check covers a
// database's commit visibility too, not only an in-memory map.
type Postgres struct {
	pool *pgxpool.Pool
	run  string
}

// OpenPostgres connects to the database at dsn and creates the rows table
// if needed. The DSN, which may hold a password, never appears in errors.
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
	return &Postgres{pool: pool, run: hex.EncodeToString(id[:])}, nil
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

// Write implements Source: one statement, committed when it returns.
func (p *Postgres) Write(ctx context.Context, row string) (int64, error) {
	var v int64
	err := p.pool.QueryRow(ctx, `INSERT INTO `+pgTable+` (run, row, version) VALUES ($1, $2, 1)
		ON CONFLICT (run, row) DO UPDATE SET version = `+pgTable+`.version + 1
		RETURNING version`, p.run, row).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("postgres source: write %s: %w", row, err)
	}
	return v, nil
}

// Close deletes this run's rows and closes the pool.
func (p *Postgres) Close(ctx context.Context) error {
	defer p.pool.Close()
	if _, err := p.pool.Exec(ctx, `DELETE FROM `+pgTable+` WHERE run = $1`, p.run); err != nil {
		return fmt.Errorf("postgres source: clean up run %s: %w", p.run, err)
	}
	return nil
}
