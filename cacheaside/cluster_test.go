package cacheaside_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
)

func TestCluster(t *testing.T) {
	t.Parallel()
	rdb := redistest.Cluster(t)
	p := redistest.Prefix(t)
	c, err := cacheaside.New(cacheaside.Config{Redis: rdb, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)

	// The race, on whichever master owns the key.
	for _, key := range []string{p + ":a", p + ":b", p + ":c", p + ":d"} {
		src := newSource("old")
		g := newGate(src)
		got := make(chan error, 1)
		go func() {
			_, err := c.Get(context.Background(), key, g.load)
			got <- err
		}()
		<-g.loaded
		src.set("new")
		require.NoError(t, rdb.Unlink(t.Context(), key).Err())
		close(g.release)
		require.NoError(t, <-got)
		require.Equal(t, "new", get(t, c, key, src.load), key)
	}

	// Versioned reads with and without a hash-tag parameter: the script's
	// keys must share a slot, or the cluster refuses it.
	withTag, err := keyspec.NewFamily("feed", p+":feed:{user}", keyspec.FamilyOptions{Strategy: keyspec.StrategyVersion, HashTag: "user"})
	require.NoError(t, err)
	noTag, err := keyspec.NewFamily("cat", p+":cat:{shop}", keyspec.FamilyOptions{Strategy: keyspec.StrategyVersion})
	require.NoError(t, err)
	for _, tc := range []struct {
		fam    *keyspec.Family
		params map[string]string
	}{
		{withTag, map[string]string{"user": "1"}},
		{withTag, map[string]string{"user": "2"}},
		{noTag, map[string]string{"shop": "1"}},
		{noTag, map[string]string{"shop": "2"}},
	} {
		src := newSource("page")
		for range 2 {
			v, err := c.GetVersioned(t.Context(), tc.fam, tc.params, src.load)
			require.NoError(t, err)
			require.Equal(t, "page", string(v))
		}
		require.EqualValues(t, 1, src.calls.Load())
	}
}
