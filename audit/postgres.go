package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/invalidator/invalidator/keyspec"
)

// Querier runs a query: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// PostgresSource is a Source that runs a family's audit query
// (keyspec.Audit) in PostgreSQL, the key's parameters bound to the query's
// @name placeholders as text (PostgreSQL casts them to the column's type).
//
// The query returns one column, text, varchar, json, jsonb or bytea, of at
// most one row: no row means the entity does not exist (found=false). A
// NULL, a second row, another column count or type is an error, so the key
// is unverifiable rather than compared with a guess.
type PostgresSource struct {
	db     Querier
	query  string
	params []string
}

// NewPostgresSource returns the source of an audit section.
func NewPostgresSource(db Querier, a *keyspec.Audit) *PostgresSource {
	return &PostgresSource{db: db, query: a.Query, params: a.Params}
}

// valueTypes are the column types a query may return: their bytes are what
// a loader would cache.
var valueTypes = map[uint32]bool{
	pgtype.TextOID: true, pgtype.VarcharOID: true, pgtype.JSONOID: true,
	pgtype.JSONBOID: true, pgtype.ByteaOID: true,
}

// Fetch implements Source.
func (s *PostgresSource) Fetch(ctx context.Context, params map[string]string) ([]byte, bool, error) {
	args := make(pgx.NamedArgs, len(s.params))
	for _, p := range s.params {
		v, ok := params[p]
		if !ok {
			return nil, false, fmt.Errorf("audit query: no value for @%s", p)
		}
		args[p] = v
	}
	rows, err := s.db.Query(ctx, s.query, args)
	if err != nil {
		return nil, false, fmt.Errorf("audit query: %w", err)
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	if len(fds) == 0 {
		// A failed query has no columns; its error comes at Close.
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, false, fmt.Errorf("audit query: %w", err)
		}
	}
	if len(fds) != 1 {
		return nil, false, fmt.Errorf("audit query: returns %d columns; return one, e.g. SELECT row_to_json(p) FROM products p WHERE id = @id", len(fds))
	}
	if !valueTypes[fds[0].DataTypeOID] {
		return nil, false, fmt.Errorf("audit query: column %q has type oid %d; return text, json, jsonb or bytea (cast it, e.g. ::text)", fds[0].Name, fds[0].DataTypeOID)
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, false, fmt.Errorf("audit query: %w", err)
		}
		return nil, false, nil
	}
	var v []byte
	if err := rows.Scan(&v); err != nil {
		return nil, false, fmt.Errorf("audit query: %w", err)
	}
	if v == nil {
		return nil, false, errors.New("audit query: returned NULL; return the value, or no row for a missing entity")
	}
	if rows.Next() {
		return nil, false, errors.New("audit query: returned more than one row; select one entity per key")
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("audit query: %w", err)
	}
	return v, true, nil
}

// PolicyCheck returns the Check of a family from its policy audit section,
// with its source in db. It fails when the family has no audit section.
func PolicyCheck(f *keyspec.Family, db Querier) (Check, error) {
	if f.Audit == nil {
		return Check{}, fmt.Errorf("family %q has no audit section in the policy", f.Name)
	}
	c := Check{
		Family:       f,
		Source:       NewPostgresSource(db, f.Audit),
		Compare:      Compare(f.Audit.Compare),
		Fields:       f.Audit.Fields,
		RecheckAfter: f.Audit.RecheckAfter,
	}
	if c.RecheckAfter == 0 {
		// recheck_after: 0 means at once; a zero Check.RecheckAfter
		// would mean Config's default.
		c.RecheckAfter = time.Nanosecond
	}
	return c, nil
}
