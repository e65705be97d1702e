package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/sim"
	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/outbox"
)

// pgRows holds the rows of every dev run, keyed by the run's id, so runs
// against one database never see each other's rows.
const pgRows = "invalidator_dev_rows"

// pgSource keeps the workload's rows in PostgreSQL and writes each write's
// invalidation through the transactional outbox, in the write's own
// transaction: the lossless path is the one the dev stack shows.
type pgSource struct {
	db  *pgxpool.Pool
	run string
	ob  outbox.Config // the run's own, dropped by close
	w   *outbox.Writer
}

// openPG creates the rows table if needed and migrates an outbox table of
// the run's own, so a relay of another deployment on the same database
// never takes the dev run's rows to another Redis.
func openPG(ctx context.Context, db *pgxpool.Pool, policy *keyspec.Policy) (*pgSource, error) {
	var id [6]byte
	_, _ = rand.Read(id[:])
	p := &pgSource{db: db, run: hex.EncodeToString(id[:])}
	p.ob = outbox.Config{Table: "invalidator_dev_outbox_" + p.run}
	if _, err := db.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+pgRows+` (
		run text NOT NULL, row text NOT NULL, version bigint NOT NULL,
		PRIMARY KEY (run, row))`); err != nil {
		return nil, fmt.Errorf("devstack: create table %s: %w", pgRows, err)
	}
	if _, err := outbox.Migrate(ctx, db, p.ob); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	var err error
	if p.w, err = outbox.NewWriter(enqueue.NewBuilder(enqueue.Config{Policy: policy}), p.ob); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	return p, nil
}

// write advances row and writes event's invalidation into the outbox, in
// one transaction, and returns the committed version.
func (p *pgSource) write(ctx context.Context, row, event string, attrs map[string]string) (int64, error) {
	tx, err := outbox.BeginPgx(ctx, p.db, pgx.TxOptions{}) // the outbox write rides the COMMIT
	if err != nil {
		return 0, fmt.Errorf("write %s: begin: %w", row, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a no-op after the commit
	var v int64
	if err := tx.QueryRow(ctx, `INSERT INTO `+pgRows+` (run, row, version) VALUES ($1, $2, 1)
		ON CONFLICT (run, row) DO UPDATE SET version = `+pgRows+`.version + 1
		RETURNING version`, p.run, row).Scan(&v); err != nil {
		return 0, fmt.Errorf("write %s: %w", row, err)
	}
	if err := p.w.Publish(ctx, tx, event, attrs); err != nil {
		return 0, fmt.Errorf("write %s: %w", row, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("write %s: commit: %w", row, err)
	}
	return v, nil
}

// read returns row's committed version, 0 if never written.
func (p *pgSource) read(ctx context.Context, row string) (int64, error) {
	var v int64
	err := p.db.QueryRow(ctx, `SELECT version FROM `+pgRows+` WHERE run = $1 AND row = $2`, p.run, row).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// pending counts the outbox rows not yet relayed.
func (p *pgSource) pending(ctx context.Context) (int, error) {
	var n int
	err := p.db.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{p.ob.Table}.Sanitize()).Scan(&n)
	return n, err
}

// startRelay runs a relay of the run's outbox to queue until stop is called.
func (p *pgSource) startRelay(ctx context.Context, queue redis.UniversalClient, log *slog.Logger) (stop func(), err error) {
	r, err := outbox.NewRelay(outbox.RelayConfig{Outbox: p.ob, DB: p.db, Queue: queue, Logger: log, StatsInterval: -1})
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	stopRelay := sim.Go(context.WithoutCancel(ctx), r.Run).Stop
	return func() {
		if err := stopRelay(); err != nil {
			log.Warn("outbox relay", "err", err)
		}
	}, nil
}

// close deletes the run's rows and drops its outbox.
func (p *pgSource) close(ctx context.Context) error {
	var errs []error
	if _, err := p.db.Exec(ctx, `DELETE FROM `+pgRows+` WHERE run = $1`, p.run); err != nil {
		errs = append(errs, fmt.Errorf("devstack: clean up run %s: %w", p.run, err))
	}
	for _, t := range []string{p.ob.Table, p.ob.Table + "_migrations", p.ob.Table + "_quarantine"} {
		if _, err := p.db.Exec(ctx, `DROP TABLE IF EXISTS `+pgx.Identifier{t}.Sanitize()); err != nil {
			errs = append(errs, fmt.Errorf("devstack: drop the run's outbox %s: %w", t, err))
		}
	}
	return errors.Join(errs...)
}
