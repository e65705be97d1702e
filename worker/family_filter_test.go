package worker_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

// threeFamilies is the example of issue 10: "product:*", the pattern delete
// of product, also matched every price and details key of a product. With
// product's id declared, the worker keeps the delete to product's keys.
// PFX prefixes every template (a cluster is shared between tests).
const threeFamilies = `
version: 1
classes:
  standard: {ttl: 10m, max_retry: 3, backoff_base: 10ms, backoff_max: 20ms}
families:
  product:
    template: "PFXproduct:{id}"
    class: standard
    mode: MODE
    max_keys: MAXKEYS
    params: {id: {match: '[0-9]+'}}
  product_price:
    template: "PFXproduct:{sku}:price:{currency}"
    class: standard
    params: {sku: {match: '[0-9]+'}, currency: {match: '[A-Z]{3}'}}
  product_details:
    template: "PFXproduct:{id}:details"
    class: standard
    params: {id: {match: '[0-9]+'}}
events:
  catalog.reset:
    attributes: []
    invalidates: [{family: product, wildcard: [id]}]
  product.updated:
    attributes: [id]
    invalidates: [product, product_details, {family: product_price, params: {sku: id}, wildcard: [currency]}]
`

func threeFamilyPolicy(t *testing.T, prefix, mode string, maxKeys int) *keyspec.Policy {
	t.Helper()
	src := strings.NewReplacer("PFX", prefix, "MODE", mode, "MAXKEYS", strconv.Itoa(maxKeys)).Replace(threeFamilies)
	p, err := keyspec.Parse("three.yaml", []byte(src))
	require.NoError(t, err)
	require.Empty(t, p.Warnings(), "the declarations keep every delete to its family")
	return p
}

// threeFamilyKeys are n products with a price, a details key each, and a
// key that looks like a product but is outside its declaration.
func threeFamilyKeys(prefix string, n int) (products, others []string) {
	for i := range n {
		products = append(products, fmt.Sprintf("%sproduct:%d", prefix, i))
		others = append(others, fmt.Sprintf("%sproduct:%d:price:EUR", prefix, i), fmt.Sprintf("%sproduct:%d:details", prefix, i))
	}
	others = append(others, prefix+"product:x")
	return products, others
}

// waitFamilyDelete waits for the family delete the task started (on the
// standard queue) to finish, and fails at once if it is dead-lettered.
func waitFamilyDelete(t *testing.T, queue redis.UniversalClient, id string) worker.ScanProgress {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(queue)
	var p worker.ScanProgress
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		p, err = worker.FamilyDeleteProgress(context.Background(), queue, id)
		require.NoError(t, err)
		if p.Finished {
			return p
		}
		if ti, err := insp.GetTaskInfo("invalidator-standard", id); err == nil && ti.State == asynq.TaskStateArchived {
			require.Failf(t, "family delete dead-lettered", "%s", ti.LastErr)
		}
		require.True(t, time.Now().Before(deadline), "family delete %s did not finish: %+v", id, p)
		time.Sleep(5 * time.Millisecond)
	}
}

// The example end to end: enqueue family product deletes
// product:1 and product:2, and leaves product:1:price:EUR and
// product:1:details (and a key outside the declaration) alone; so does the
// same delete triggered by an event.
func TestFamilyDeleteKeepsToItsFamily(t *testing.T) {
	t.Parallel()
	b := startEventWorker(t, threeFamilyPolicy(t, "", "enforce", 0))
	ctx := context.Background()
	products, others := threeFamilyKeys("", 2)
	set(t, b.db.Client, products...)
	set(t, b.db.Client, others...)

	id, err := b.client.DeleteFamily(ctx, "product", nil)
	require.NoError(t, err)
	p := waitFamilyDelete(t, b.db.Client, id)
	require.Zero(t, count(t, b.db.Client, products...), "the family's keys were not deleted")
	require.Equal(t, len(others), count(t, b.db.Client, others...), "keys of other families were deleted")
	require.Equal(t, int64(len(products)), p.Deleted)
	require.Equal(t, int64(len(products)+len(others)), p.Scanned, "SCAN returns them all; the worker keeps the others")
	require.Equal(t, float64(len(others)), gatherValue(t, b.reg, "invalidator_family_scan_keys_kept_total", map[string]string{"family": "product"}))

	// The same delete, queued by an event.
	set(t, b.db.Client, products...)
	_, err = b.client.Publish(ctx, "catalog.reset", map[string]string{})
	require.NoError(t, err)
	requireGone(t, b.db.Client, products...)
	b.waitIdle(t)
	require.Equal(t, len(others), count(t, b.db.Client, others...), "an event's pattern delete took other families' keys")
}

// In shadow mode the would-delete count holds only the family's keys.
func TestFamilyShadowCountsOnlyItsKeys(t *testing.T) {
	t.Parallel()
	b := startEventWorker(t, threeFamilyPolicy(t, "", "shadow", 0))
	products, others := threeFamilyKeys("", 3)
	set(t, b.db.Client, products...)
	set(t, b.db.Client, others...)

	id, err := b.client.DeleteFamily(context.Background(), "product", nil)
	require.NoError(t, err)
	p := waitFamilyDelete(t, b.db.Client, id)
	require.Equal(t, "shadow", p.Mode)
	require.Equal(t, int64(len(products)), p.Deleted, "shadow mode counted keys of other families")
	require.Equal(t, float64(len(products)), gatherValue(t, b.reg, "invalidator_would_delete_keys_total", map[string]string{"family": "product"}))
	require.Equal(t, len(products)+len(others), count(t, b.db.Client, append(products, others...)...), "shadow mode deleted keys")
}

// max_keys counts only the family's keys: a delete of 5 products among 200
// other keys the glob matches stays under a max_keys of 5.
func TestFamilyMaxKeysCountsOnlyItsKeys(t *testing.T) {
	t.Parallel()
	b := startEventWorker(t, threeFamilyPolicy(t, "", "enforce", 5))
	products, others := threeFamilyKeys("", 5)
	more, _ := threeFamilyKeys("", 100)
	for _, k := range more[5:] {
		others = append(others, k+":price:USD")
	}
	set(t, b.db.Client, products...)
	set(t, b.db.Client, others...)

	id, err := b.client.DeleteFamily(context.Background(), "product", nil)
	require.NoError(t, err)
	p := waitFamilyDelete(t, b.db.Client, id)
	require.Equal(t, int64(len(products)), p.Deleted)
	require.Zero(t, count(t, b.db.Client, products...))
	require.Equal(t, len(others), count(t, b.db.Client, others...))
}

// A producer with an older policy (no declarations) can queue values the
// worker's policy refuses. A family delete with such a value is poison, with
// the reason, and is not retried. An event skips the invalidations whose
// family refuses its values (here all of them), each counted as refused, and
// succeeds: no key of those families can hold such a value.
func TestUndeclaredValueAtTheWorker(t *testing.T) {
	t.Parallel()
	b := startEventWorker(t, threeFamilyPolicy(t, "", "enforce", 0))
	ctx := context.Background()
	older := strings.NewReplacer("PFX", "", "MODE", "enforce", "MAXKEYS", "0").Replace(threeFamilies)
	older = strings.NewReplacer("    params: {id: {match: '[0-9]+'}}\n", "",
		"    params: {sku: {match: '[0-9]+'}, currency: {match: '[A-Z]{3}'}}\n", "").Replace(older)
	op, err := keyspec.Parse("older.yaml", []byte(older))
	require.NoError(t, err)
	producer, err := enqueue.New(b.db.Client, enqueue.Config{Policy: op})
	require.NoError(t, err)

	event, err := producer.Publish(ctx, "product.updated", map[string]string{"id": "1:price:EUR"})
	require.NoError(t, err)
	family, err := producer.DeleteFamily(ctx, "product", map[string]string{"id": "abc"})
	require.NoError(t, err)

	var ti *asynq.TaskInfo
	require.Eventually(t, func() bool {
		ti, err = b.insp.GetTaskInfo("invalidator-standard", family)
		return err == nil && ti.State == asynq.TaskStateArchived
	}, 10*time.Second, 5*time.Millisecond)
	require.Contains(t, ti.LastErr, "poison task")
	require.Contains(t, ti.LastErr, `pattern family "product": parameter value outside its declaration: parameter "id" value "abc" does not match its declaration "[0-9]+"`)
	require.Zero(t, ti.Retried, "poison must not be retried")

	b.waitIdle(t)
	_, err = b.insp.GetTaskInfo("invalidator-standard", event)
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "the event succeeds")
	for _, f := range []string{"product", "product_details", "product_price"} {
		require.Equal(t, 1.0, gatherValue(t, b.reg, "invalidator_event_actions_total",
			map[string]string{"event": "product.updated", "family": f, "action": "refused"}), f)
	}
}

// On a cluster each master's scan filters its own keys: product's keys go
// from every master, the other families' keys stay on every master.
func TestClusterFamilyDeleteKeepsToItsFamily(t *testing.T) {
	t.Parallel()
	queue, cluster := redistest.Client(t), redistest.Cluster(t)
	prefix := redistest.Prefix(t)
	policy := threeFamilyPolicy(t, prefix, "enforce", 0)
	products, others := threeFamilyKeys(prefix, 200)
	set(t, cluster, products...)
	set(t, cluster, others...)
	masters := map[string]bool{}
	for _, k := range products {
		addr, err := masterOf(cluster, k)
		require.NoError(t, err)
		masters[addr] = true
	}
	require.Len(t, masters, 3, "the family's keys were meant to spread over every master")

	w, err := worker.New(worker.Config{Queue: queue, Cache: cluster, Policy: policy, Logger: testLogger(t),
		PollInterval: time.Millisecond, ScanCount: 20, ShutdownTimeout: 2 * time.Second})
	require.NoError(t, err)
	worker.RunWorker(t, w)
	client, err := enqueue.New(queue, enqueue.Config{Policy: policy})
	require.NoError(t, err)
	id, err := client.DeleteFamily(context.Background(), "product", nil)
	require.NoError(t, err)
	p := waitFamilyDelete(t, queue, id)
	require.Equal(t, 3, p.Nodes)
	require.Zero(t, count(t, cluster, products...))
	require.Equal(t, len(others), count(t, cluster, others...), "keys of other families were deleted")
	require.Equal(t, int64(len(products)), p.Deleted)
	require.Equal(t, int64(len(products)+len(others)), p.Scanned)
}

// masterOf names the master that holds key's slot.
func masterOf(c *redis.ClusterClient, key string) (string, error) {
	var addr string
	var mu sync.Mutex
	err := c.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
		// A node that does not hold the key's slot answers MOVED.
		if n.Exists(ctx, key).Val() == 1 {
			mu.Lock()
			addr = n.Options().Addr
			mu.Unlock()
		}
		return nil
	})
	return addr, err
}
