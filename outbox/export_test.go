package outbox

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// SetAfterEnqueue makes r call f after a round's tasks are enqueued and
// before the round commits.
func SetAfterEnqueue(r *Relay, f func(ctx context.Context, tx pgx.Tx)) { r.afterEnqueue = f }

// SetAfterRound sets the hook Run calls after each round; call it before Run.
func SetAfterRound(r *Relay, f func(rows int)) { r.afterRound = f }

// Collectors of m, for testutil.
func (m *Metrics) RelayErrors(stage string) prometheus.Collector {
	return m.errors.WithLabelValues(stage)
}
func (m *Metrics) RowsRelayed() prometheus.Collector   { return m.rowsRelayed }
func (m *Metrics) TasksEnqueued() prometheus.Collector { return m.tasksEnqueued }
func (m *Metrics) Depth() prometheus.Collector         { return m.depth }
func (m *Metrics) OldestAge() prometheus.Collector     { return m.oldestSeconds }
func (m *Metrics) Quarantined() prometheus.Collector   { return m.quarantinedRows }

// ClaimSQL is the statement a round claims rows with ($1: the batch size).
func ClaimSQL(r *Relay) string { return r.claimSQL }
