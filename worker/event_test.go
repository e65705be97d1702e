package worker_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
	"github.com/invalidator/invalidator/worker"
)

// eventPolicy is examples/policy.yaml in miniature, with product pages in
// the mode the test puts in MODE.
const eventPolicy = `
version: 1
classes:
  critical: {ttl: 1m, weight: 6, max_retry: 3, backoff_base: 10ms, backoff_max: 20ms}
  standard: {ttl: 10m, weight: 3, max_retry: 3, backoff_base: 10ms, backoff_max: 20ms}
  bulk: {ttl: 1h, max_retry: 3, backoff_base: 10ms, backoff_max: 20ms}
families:
  product: {template: "product:{id}", class: critical, mode: MODE}
  product_page: {template: "product_page:{id}:{page}", class: bulk, max_keys: MAXKEYS, mode: MODE}
  catalog: {template: "catalog", class: standard, strategy: version}
events:
  product.updated:
    attributes: [id]
    invalidates:
      - product
      - {family: product_page, wildcard: [page]}
      - catalog
`

func parseEventPolicy(t *testing.T, mode string, maxKeys int) *keyspec.Policy {
	t.Helper()
	src := strings.NewReplacer("MODE", mode, "MAXKEYS", strconv.Itoa(maxKeys)).Replace(eventPolicy)
	p, err := keyspec.Parse("events.yaml", []byte(src))
	require.NoError(t, err)
	return p
}

type eventBundle struct {
	db      *redistest.DB
	w       *worker.Worker
	client  *enqueue.Client
	insp    *asynq.Inspector
	reg     *prometheus.Registry
	metrics *worker.Metrics
}

func startEventWorker(t *testing.T, p *keyspec.Policy) *eventBundle {
	t.Helper()
	db := redistest.NewDB(t)
	reg := prometheus.NewRegistry()
	m, err := worker.NewMetrics(reg)
	require.NoError(t, err)
	w, err := worker.New(worker.Config{Queue: db.Client, Policy: p, Logger: testLogger(t), Metrics: m,
		PollInterval: time.Millisecond, RetryCheckInterval: 50 * time.Millisecond, ShutdownTimeout: 2 * time.Second})
	require.NoError(t, err)
	client, err := enqueue.New(db.Client, enqueue.Config{Policy: p})
	require.NoError(t, err)
	worker.RunWorker(t, w)
	return &eventBundle{db: db, w: w, client: client, insp: asynq.NewInspectorFromRedisClient(db.Client), reg: reg, metrics: m}
}

// waitIdle waits until every queue of the policy has no pending, active,
// scheduled or retrying task.
func (b *eventBundle) waitIdle(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, q := range b.w.Policy().Queues() {
			info, err := b.insp.GetQueueInfo(q)
			if err != nil {
				continue // a queue that never had a task does not exist yet
			}
			if info.Pending+info.Active+info.Scheduled+info.Retry > 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
}

// The acceptance case: one event removes exactly the product's keys and its
// pages, bumps the catalog version, and leaves other products alone.
func TestEventInvalidatesWhatThePolicySays(t *testing.T) {
	t.Parallel()
	b := startEventWorker(t, parseEventPolicy(t, "enforce", 0))
	ctx := context.Background()
	mine := []string{"product:7", "product_page:7:1", "product_page:7:2", "product_page:7:3"}
	others := []string{"product:70", "product:8", "product_page:8:1", "product_page:77:1", "catalog:x"}
	set(t, b.db.Client, append(mine, others...)...)
	require.NoError(t, b.db.Client.Set(ctx, "{catalog}#ver", "5", 0).Err())

	_, err := b.client.Publish(ctx, "product.updated", map[string]string{"id": "7"})
	require.NoError(t, err)
	requireGone(t, b.db.Client, mine...)
	b.waitIdle(t)
	require.Equal(t, len(others), count(t, b.db.Client, others...), "another product's keys were deleted")
	v, err := b.db.Client.Get(ctx, "{catalog}#ver").Int64()
	require.NoError(t, err)
	require.Greater(t, v, int64(5), "catalog version not bumped")
	ttl := b.db.Client.PTTL(ctx, "{catalog}#ver").Val()
	require.Positive(t, ttl, "version key without a TTL")

	for _, action := range []struct{ family, action string }{{"product", "delete"}, {"product_page", "pattern"}, {"catalog", "bump"}} {
		require.Equal(t, 1.0, gatherValue(t, b.reg, "invalidator_event_actions_total",
			map[string]string{"event": "product.updated", "family": action.family, "action": action.action}),
			"%s %s", action.family, action.action)
	}
}

// Shadow mode keeps every key but counts what would go; after a policy
// switch to enforce, the next event deletes.
func TestShadowModeThenEnforce(t *testing.T) {
	t.Parallel()
	b := startEventWorker(t, parseEventPolicy(t, "shadow", 0))
	ctx := context.Background()
	keys := []string{"product:7", "product_page:7:1", "product_page:7:2"}
	set(t, b.db.Client, keys...)

	_, err := b.client.Publish(ctx, "product.updated", map[string]string{"id": "7"})
	require.NoError(t, err)
	b.waitIdle(t)
	require.Eventually(t, func() bool {
		return gatherValue(t, b.reg, "invalidator_would_delete_keys_total", map[string]string{"family": "product_page"}) == 2
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 1.0, gatherValue(t, b.reg, "invalidator_would_delete_keys_total", map[string]string{"family": "product"}))
	require.Equal(t, len(keys), count(t, b.db.Client, keys...), "shadow mode deleted keys")

	// A reload that would change the served queues is refused whole.
	bad, err := keyspec.Parse("bad.yaml", []byte(strings.NewReplacer("weight: 6", "weight: 2", "MODE", "enforce", "MAXKEYS", "0").Replace(eventPolicy)))
	require.NoError(t, err)
	require.ErrorIs(t, b.w.SetPolicy(bad), worker.ErrRestartRequired)
	require.Equal(t, keyspec.ModeShadow, b.w.Policy().Families["product"].Mode)

	require.NoError(t, b.w.SetPolicy(parseEventPolicy(t, "enforce", 0)))
	_, err = b.client.Publish(ctx, "product.updated", map[string]string{"id": "7"})
	require.NoError(t, err)
	requireGone(t, b.db.Client, keys...)
}

// A pattern delete that would exceed max_keys stops, goes to the dead
// letter with the counts, and finishes only after an operator forces it.
func TestMaxKeysStopsAScan(t *testing.T) {
	t.Parallel()
	const limit = 10
	b := startEventWorker(t, parseEventPolicy(t, "enforce", limit))
	ctx := context.Background()
	var pages []string
	for i := range 3000 {
		pages = append(pages, "product_page:7:"+strconv.Itoa(i+1))
	}
	set(t, b.db.Client, pages...)
	set(t, b.db.Client, "product_page:8:1")

	id, err := b.client.DeleteFamily(ctx, "product_page", map[string]string{"id": "7"})
	require.NoError(t, err)
	var info *asynq.TaskInfo
	require.Eventually(t, func() bool {
		info, err = b.insp.GetTaskInfo("invalidator-bulk", id)
		return err == nil && info.State == asynq.TaskStateArchived
	}, 10*time.Second, 5*time.Millisecond)
	require.Contains(t, info.LastErr, "past max_keys 10")
	require.Contains(t, info.LastErr, "invalidator dead retry --force "+id)
	left := count(t, b.db.Client, pages...)
	require.GreaterOrEqual(t, left, len(pages)-limit, "deleted more than max_keys")
	require.Equal(t, 1, count(t, b.db.Client, "product_page:8:1"))
	require.Equal(t, 1.0, gatherValue(t, b.reg, "invalidator_dead_letters_total", map[string]string{"reason": "max_keys"}))

	require.NoError(t, worker.ForceFamilyDelete(ctx, b.db.Client, tasks.ScanID(info.ID, info.Headers), 0))
	require.NoError(t, b.insp.RunTask("invalidator-bulk", id))
	requireGone(t, b.db.Client, pages...)
	require.Equal(t, 1, count(t, b.db.Client, "product_page:8:1"))
}

// A class with second_delete deletes the keys again after the delay, so a
// reader without leases that put a stale value back loses it.
func TestSecondDelete(t *testing.T) {
	t.Parallel()
	p, err := keyspec.Parse("second.yaml", []byte(`
version: 1
classes:
  critical: {ttl: 1m, second_delete: 300ms}
  standard: {ttl: 1m}
families:
  price: {template: "price:{sku}", class: critical}
  page: {template: "page:{sku}", class: standard}
events:
  price.changed:
    attributes: [sku]
    invalidates: [price, page]
`))
	require.NoError(t, err)
	b := startEventWorker(t, p)
	ctx := context.Background()
	set(t, b.db.Client, "price:1", "page:1")
	_, err = b.client.Publish(ctx, "price.changed", map[string]string{"sku": "1"})
	require.NoError(t, err)
	requireGone(t, b.db.Client, "price:1", "page:1")

	// A slow reader without a lease stores what it loaded before the write.
	set(t, b.db.Client, "price:1", "page:1")
	requireGone(t, b.db.Client, "price:1")
	b.waitIdle(t)
	require.Equal(t, 1, count(t, b.db.Client, "page:1"), "a class without second_delete got one")

	// The second delete does not schedule a third.
	set(t, b.db.Client, "price:1")
	time.Sleep(700 * time.Millisecond)
	b.waitIdle(t)
	require.Equal(t, 1, count(t, b.db.Client, "price:1"), "a second delete scheduled another")
}

// An event the worker's policy does not know is dead-lettered at once with
// a reason that says what to do, and the worker keeps running.
func TestUnknownEventIsPoison(t *testing.T) {
	t.Parallel()
	producer := parseEventPolicy(t, "enforce", 0)
	older, err := keyspec.Parse("old.yaml", []byte(`
version: 1
classes:
  critical: {weight: 6}
  standard: {weight: 3}
  bulk: {}
families:
  product: {template: "product:{id}", class: critical}
`))
	require.NoError(t, err)
	b := startEventWorker(t, older)
	client, err := enqueue.New(b.db.Client, enqueue.Config{Policy: producer})
	require.NoError(t, err)
	id, err := client.Publish(context.Background(), "product.updated", map[string]string{"id": "1"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := b.insp.GetTaskInfo("invalidator-critical", id)
		return err == nil && info.State == asynq.TaskStateArchived &&
			strings.Contains(info.LastErr, `unknown event "product.updated"`) &&
			strings.Contains(info.LastErr, "roll policy changes out to workers before producers")
	}, 10*time.Second, 5*time.Millisecond)

	// Still serving.
	set(t, b.db.Client, "x")
	_, err = b.client.DeleteKeys(context.Background(), "x")
	require.NoError(t, err)
	requireGone(t, b.db.Client, "x")
}

// gatherValue sums the counters or gauges named name on reg whose labels
// include every pair of labels.
func gatherValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// refusePolicy declares product ids as digits; an event also invalidates
// families that take any id. DECL is where the declarations go.
const refusePolicy = `
version: 1
classes:
  standard: {ttl: 10m, max_retry: 3, backoff_base: 10ms, backoff_max: 20ms}
families:
  product: {template: "product:{id}", class: standard DECL}
  product_feed: {template: "pfeed:{id}", class: standard, strategy: version DECL}
  slug: {template: "slug:{id}", class: standard}
  page: {template: "page:{id}:{page}", class: standard}
  search: {template: "search:{id}", class: standard, strategy: version}
events:
  product.updated:
    attributes: [id]
    invalidates: [product, product_feed, slug, {family: page, wildcard: [page]}, search]
`

// An attribute value outside a family's declaration cannot name a key of
// that family (rendering one refuses it), so there is nothing of it to
// invalidate: the worker skips that family's invalidation, logged and
// counted as "refused", and applies every other one. Before, the whole
// event was poison and the deletes of the other families were lost. Here a
// producer with a policy from before the declarations publishes the value.
func TestEventSkipsOnlyWhatItsValuesCannotRender(t *testing.T) {
	t.Parallel()
	declared, err := keyspec.Parse("declared.yaml", []byte(strings.ReplaceAll(refusePolicy, " DECL", ", params: {id: {match: '[0-9]+'}}")))
	require.NoError(t, err)
	older, err := keyspec.Parse("older.yaml", []byte(strings.ReplaceAll(refusePolicy, " DECL", "")))
	require.NoError(t, err)
	b := startEventWorker(t, declared)
	ctx := context.Background()
	producer, err := enqueue.New(b.db.Client, enqueue.Config{Policy: older})
	require.NoError(t, err)
	set(t, b.db.Client, "slug:abc", "page:abc:1", "page:abc:2")

	id, err := producer.Publish(ctx, "product.updated", map[string]string{"id": "abc"})
	require.NoError(t, err)
	requireGone(t, b.db.Client, "slug:abc", "page:abc:1", "page:abc:2")
	b.waitIdle(t)
	require.Equal(t, 1, count(t, b.db.Client, "{search:abc}#ver"), "the search version was not bumped")
	_, err = b.insp.GetTaskInfo("invalidator-standard", id)
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "the event must succeed, not go to the dead letter")

	for family, action := range map[string]string{"product": "refused", "product_feed": "refused", "slug": "delete", "page": "pattern", "search": "bump"} {
		require.Eventually(t, func() bool {
			return gatherValue(t, b.reg, "invalidator_event_actions_total",
				map[string]string{"event": "product.updated", "family": family, "action": action}) == 1
		}, 5*time.Second, 5*time.Millisecond, "%s %s", family, action)
	}
	require.Zero(t, gatherValue(t, b.reg, "invalidator_dead_letters_total", nil))
}
