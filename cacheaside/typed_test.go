package cacheaside_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/keyspec"
)

type user struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

func TestTypedRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{})
	users := cacheaside.NewTyped(b.cache, cacheaside.JSON[user]{})
	calls := 0
	load := func(context.Context) (user, error) { calls++; return user{ID: 42, Name: "Ada"}, nil }
	for range 2 {
		u, err := users.Get(t.Context(), "user:42", load)
		require.NoError(t, err)
		require.Equal(t, user{ID: 42, Name: "Ada"}, u)
	}
	require.Equal(t, 1, calls)
	require.Equal(t, `v{"id":42,"name":"Ada"}`, b.rdb.Get(t.Context(), "user:42").Val())

	fam, err := keyspec.NewFamily("user", "user:{id}", keyspec.FamilyOptions{Strategy: keyspec.StrategyVersion})
	require.NoError(t, err)
	u, err := users.GetVersioned(t.Context(), fam, map[string]string{"id": "7"}, load)
	require.NoError(t, err)
	require.Equal(t, "Ada", u.Name)

	_, err = users.Get(t.Context(), "user:0", func(context.Context) (user, error) { return user{}, cacheaside.ErrNotFound })
	require.ErrorIs(t, err, cacheaside.ErrNotFound)
}

// failingCodec refuses to encode.
type failingCodec struct{ cacheaside.JSON[user] }

func (failingCodec) Marshal(user) ([]byte, error) { return nil, errors.New("cannot encode") }

func TestTypedCodecErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{})

	// A value that does not encode is a failed load: no value is stored,
	// only a failure marker.
	bad := cacheaside.NewTyped[user](b.cache, failingCodec{})
	_, err := bad.Get(t.Context(), "user:1", func(context.Context) (user, error) { return user{ID: 1}, nil })
	require.ErrorIs(t, err, cacheaside.ErrCodec)
	require.ErrorIs(t, err, cacheaside.ErrLoadFailed)
	require.ErrorContains(t, err, "cannot encode")
	require.Equal(t, "fcodec; plain error", b.rdb.Get(t.Context(), "user:1").Val())

	// A cached value that does not decode is reported with its key, and left.
	require.NoError(t, b.rdb.Set(t.Context(), "user:2", "v[1,2]", 0).Err())
	users := cacheaside.NewTyped(b.cache, cacheaside.JSON[user]{})
	_, err = users.Get(t.Context(), "user:2", func(context.Context) (user, error) { return user{}, nil })
	require.ErrorIs(t, err, cacheaside.ErrCodec)
	require.ErrorContains(t, err, `"user:2"`)
	require.Equal(t, "v[1,2]", b.rdb.Get(t.Context(), "user:2").Val())
}
