package pgtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// commandTimeout bounds the harness's own statements (CREATE and DROP
// DATABASE).
const commandTimeout = 30 * time.Second

// DB is one database of the private server, for one test.
type DB struct {
	// Name is the database name, unique in the test binary's run.
	Name string
	// DSN is postgres://postgres@127.0.0.1:PORT/NAME?sslmode=disable: trust
	// auth, so it holds no password. Hand it to database/sql (pgx's stdlib
	// driver) or to a CLI subprocess.
	DSN string
	// Pool is connected to the database; it is closed at test cleanup.
	Pool *pgxpool.Pool
}

// NewDB creates an empty database for t (from template1) and drops it at
// cleanup, closing whatever connections are left. It skips t when no
// PostgreSQL is installed, except under CI (see the package documentation).
func NewDB(t testing.TB) *DB {
	t.Helper()
	h := current(t)
	return newDB(t, h.server(t), fmt.Sprintf("t_%s_%d", h.runID, h.dbSeq.Add(1)))
}

// newDB creates database name on s for t.
func newDB(t testing.TB, s *server, name string) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	db := &DB{Name: name, DSN: s.dsn(name)}
	// Registered first, so it runs after the pool is closed.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		defer cancel()
		// FORCE ends the connections a test leaked (or a subprocess left).
		if _, err := s.admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	pool, err := pgxpool.New(ctx, db.DSN)
	if err != nil {
		t.Fatalf("pgtest: connect to database %s: %v", name, err)
	}
	db.Pool = pool
	t.Cleanup(pool.Close)
	return db
}
