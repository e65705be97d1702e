package dashboard_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/dashboard"
	"github.com/invalidator/invalidator/tasks"
)

// Event tasks show their name and attribute names, never attribute values,
// unless revealed; a valid event is never "undecodable".
func TestEventPayload(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	payload, err := tasks.Marshal(tasks.Event{
		Name:       "product.updated",
		Attrs:      map[string]string{"id": "7", "owner_email": "alice@example.com"},
		Target:     "catalog",
		EnqueuedAt: at,
	})
	require.NoError(t, err)

	redacted := dashboard.RedactPayload(tasks.KindEvent, payload)
	require.Equal(t, `invalidate:event: event "product.updated", id, owner_email (values hidden)`, redacted)

	revealed := dashboard.RevealPayload(tasks.KindEvent, payload)
	require.Equal(t, `invalidate:event: event "product.updated" id="7" owner_email="alice@example.com", target "catalog", enqueued 2026-01-02T03:04:05Z`, revealed)

	bare, err := tasks.Marshal(tasks.Event{Name: "catalog.reindexed"})
	require.NoError(t, err)
	require.Equal(t, `invalidate:event: event "catalog.reindexed"`, dashboard.RedactPayload(tasks.KindEvent, bare))
	require.Equal(t, `invalidate:event: event "catalog.reindexed"`, dashboard.RevealPayload(tasks.KindEvent, bare))

	// A payload of another kind is still undecodable as an event.
	keys, err := tasks.Marshal(tasks.DeleteKeys{Keys: []string{"a"}})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(dashboard.RedactPayload(tasks.KindEvent, keys), "undecodable ("))
	require.True(t, strings.HasPrefix(dashboard.RevealPayload(tasks.KindEvent, keys), "undecodable ("))
}
