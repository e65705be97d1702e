package enqueue_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

func TestPublishBatchedKeyDeletesOnlyWhenThatIsAllTheEventDoes(t *testing.T) {
	t.Parallel()
	p, err := keyspec.Parse("p.yaml", []byte(`version: 1
default_class: standard
classes:
  standard: {ttl: 1m}
  critical: {ttl: 1m, queue: prices}
families:
  product: {template: "product:{id}", class: standard}
  price: {template: "price:{id}", class: critical}
  page: {template: "page:{id}", class: standard, mode: shadow}
  feed: {template: "feed:{id}", class: standard, strategy: version}
events:
  product.updated: {attributes: [id], invalidates: [product, price]}
  page.updated: {attributes: [id], invalidates: [product, page]}
  feed.updated: {attributes: [id], invalidates: [feed]}
`))
	require.NoError(t, err)
	b := enqueue.NewBuilder(enqueue.Config{Policy: p})

	msgs, err := b.PublishBatched("product.updated", map[string]string{"id": "7"})
	require.NoError(t, err)
	require.Len(t, msgs, 2, "one key delete per class")
	byQueue := map[string][]string{}
	for _, m := range msgs {
		require.Equal(t, tasks.KindDeleteKeys, m.Kind)
		task, err := tasks.Unmarshal(m.Kind, m.Payload)
		require.NoError(t, err)
		byQueue[m.Queue] = task.(tasks.DeleteKeys).Keys
	}
	require.Equal(t, map[string][]string{p.Classes["standard"].Queue: {"product:7"}, "prices": {"price:7"}}, byQueue)

	for _, event := range []string{"page.updated", "feed.updated"} {
		msgs, err := b.PublishBatched(event, map[string]string{"id": "7"})
		require.NoError(t, err)
		require.Len(t, msgs, 1, event)
		require.Equal(t, tasks.KindEvent, msgs[0].Kind, "%s: a shadow family or a bump stays with the worker", event)
	}
	_, err = b.PublishBatched("nope", map[string]string{"id": "7"})
	require.ErrorIs(t, err, keyspec.ErrUnknownEvent)
}
