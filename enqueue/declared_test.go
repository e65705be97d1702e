package enqueue_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
)

// The write site refuses a value outside its parameter's declaration,
// whichever way it invalidates, and queues nothing.
func TestEnqueueRefusesUndeclaredValue(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	policy, err := keyspec.Parse("p.yaml", []byte(`version: 1
classes: {standard: {ttl: 1m}}
families:
  product: {template: "product:{id}", class: standard, params: {id: {match: '[0-9]+'}}}
  feed: {template: "feed:{id}", class: standard, strategy: version, params: {id: {match: '[0-9]+'}}}
events:
  product.updated: {attributes: [id], invalidates: [product, feed]}
`))
	require.NoError(t, err)
	c, err := enqueue.New(db.Client, enqueue.Config{Policy: policy})
	require.NoError(t, err)
	bad := map[string]string{"id": "1:price:EUR"}

	_, err = c.DeleteFamily(t.Context(), "product", bad)
	require.ErrorIs(t, err, keyspec.ErrInvalidParam)
	require.ErrorContains(t, err, `parameter "id" value "1:price:EUR" does not match its declaration "[0-9]+"`)
	_, err = c.BumpVersion(t.Context(), "feed", bad)
	require.ErrorIs(t, err, keyspec.ErrInvalidParam)
	_, err = c.Publish(t.Context(), "product.updated", bad)
	require.ErrorIs(t, err, keyspec.ErrInvalidParam)
	require.Zero(t, db.Client.DBSize(t.Context()).Val(), "a refused invalidation was queued")

	_, err = c.Publish(t.Context(), "product.updated", map[string]string{"id": "1"})
	require.NoError(t, err)
}

// An event whose values only some of its families refuse is queued: those
// invalidations cannot name a cached key and the worker skips them, while
// refusing the event would lose the deletes of the other families. One
// that every family refuses would invalidate nothing, and is refused.
func TestPublishRefusesOnlyAnEventThatInvalidatesNothing(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	policy, err := keyspec.Parse("p.yaml", []byte(`version: 1
classes: {standard: {ttl: 1m}}
families:
  product: {template: "product:{id}", class: standard, params: {id: {match: '[0-9]+'}}}
  slug: {template: "slug:{id}", class: standard}
events:
  product.updated: {attributes: [id], invalidates: [product, slug]}
  product.priced: {attributes: [id], invalidates: [product]}
`))
	require.NoError(t, err)
	c, err := enqueue.New(db.Client, enqueue.Config{Policy: policy})
	require.NoError(t, err)
	bad := map[string]string{"id": "abc"}

	_, err = c.Publish(t.Context(), "product.priced", bad)
	require.ErrorIs(t, err, keyspec.ErrInvalidParam)
	require.ErrorContains(t, err, `enqueue publish: event "product.priced" invalidates nothing with these attribute values, every family refuses them: render family "product"`)
	require.Zero(t, db.Client.DBSize(t.Context()).Val(), "a refused invalidation was queued")

	id, err := c.Publish(t.Context(), "product.updated", bad)
	require.NoError(t, err, "slug:abc must still be deleted")
	require.NotEmpty(t, id)
}
