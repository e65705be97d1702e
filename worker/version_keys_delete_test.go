package worker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/keyspec"
)

const versionTruncatePolicy = `
version: 1
classes:
  standard: {ttl: 10m, max_retry: 3, backoff_base: 10ms, backoff_max: 20ms}
families:
  catalog: {template: "catalog:{id}", class: standard, strategy: version, max_keys: MAXKEYS}
  feed: {template: "feed:{user}:{page}", class: standard, strategy: version, hash_tag: user}
  catalog_delete: {template: "catalog:{id}", class: standard}
events:
  catalog.truncated:
    attributes: [id, user, page]
    invalidates: [catalog, feed]
`

// A family delete of a version family (what cdc enqueues for a TRUNCATE)
// deletes the family's version keys, and nothing else: not their data keys,
// which the deleted version keys orphan, and not another family's keys.
// The next read or bump restarts each entity above every old version.
func TestFamilyDeleteOfAVersionFamilyDeletesItsVersionKeys(t *testing.T) {
	t.Parallel()
	p, err := keyspec.Parse("v.yaml", []byte(strings.ReplaceAll(versionTruncatePolicy, "MAXKEYS", "0")))
	require.NoError(t, err)
	b := startEventWorker(t, p)
	ctx := context.Background()
	versions := []string{"{catalog:1}#ver", "{catalog:22}#ver", "feed:{7}:1#ver", "feed:{8}:2#ver"}
	others := []string{"{catalog:1}#v123", "feed:{7}:1#v5", "catalog:1", "{catalog:1}#verx", "{catalogs:1}#ver"}
	set(t, b.db.Client, versions...)
	set(t, b.db.Client, others...)

	msgs, err := b.client.Builder().EveryKeyOf("catalog.truncated")
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	for _, m := range msgs {
		_, err := b.client.Enqueue(ctx, m)
		require.NoError(t, err)
	}
	requireGone(t, b.db.Client, versions...)
	b.waitIdle(t)
	require.Equal(t, len(others), count(t, b.db.Client, others...), "keys other than version keys were deleted")
}

// max_keys holds for a version family's delete as for any family delete:
// past it the task stops and goes to the dead letter.
func TestVersionKeysDeleteStopsAtMaxKeys(t *testing.T) {
	t.Parallel()
	p, err := keyspec.Parse("v.yaml", []byte(strings.ReplaceAll(versionTruncatePolicy, "MAXKEYS", "2")))
	require.NoError(t, err)
	b := startEventWorker(t, p)
	ctx := context.Background()
	var versions []string
	for i := range 50 {
		versions = append(versions, fmt.Sprintf("{catalog:%d}#ver", i))
	}
	set(t, b.db.Client, versions...)
	msgs, err := b.client.Builder().EveryKeyOf("catalog.truncated")
	require.NoError(t, err)
	id, err := b.client.Enqueue(ctx, msgs[0])
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ti, err := b.insp.GetTaskInfo("invalidator-standard", id)
		return err == nil && ti.State == asynq.TaskStateArchived
	}, 10*time.Second, 5*time.Millisecond, "the delete did not stop at max_keys")
	require.LessOrEqual(t, len(versions)-count(t, b.db.Client, versions...), 2, "deleted past max_keys")
}
