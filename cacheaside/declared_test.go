package cacheaside_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/keyspec"
)

// A value outside its parameter's declaration renders no key: the read
// fails before it loads or writes, so the cache never holds a key that a
// pattern delete of the family would skip.
func TestGetRefusesUndeclaredValue(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{TTL: time.Minute})
	decl := map[string]keyspec.Param{"id": {Match: "[0-9]+"}}
	product, err := keyspec.NewFamily("product", "product:{id}", keyspec.FamilyOptions{Params: decl})
	require.NoError(t, err)
	feed, err := keyspec.NewFamily("feed", "feed:{id}", keyspec.FamilyOptions{Strategy: keyspec.StrategyVersion, TTL: time.Minute, Params: decl})
	require.NoError(t, err)
	loads := 0
	load := func(context.Context) ([]byte, error) { loads++; return []byte("v"), nil }

	_, err = b.cache.GetFamily(t.Context(), product, map[string]string{"id": "1:price:EUR"}, load)
	require.ErrorIs(t, err, keyspec.ErrInvalidParam)
	_, err = b.cache.GetVersioned(t.Context(), feed, map[string]string{"id": "x"}, load)
	require.ErrorIs(t, err, keyspec.ErrInvalidParam)
	require.Zero(t, loads)
	require.Zero(t, b.rdb.DBSize(t.Context()).Val(), "a refused read wrote to the cache")

	v, err := b.cache.GetFamily(t.Context(), product, map[string]string{"id": "1"}, load)
	require.NoError(t, err)
	require.Equal(t, "v", string(v))
}
