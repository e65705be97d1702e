package cacheaside_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
)

// A versioned read stores its value only while the data key still holds
// its lease marker. Whatever took the marker away (an invalidation that
// deleted the data key; the lease expiring, and another reader leasing the
// key or storing a newer value there), the slow reader's value is never
// written: it may predate the write that caused it.
func TestGetVersionedStoreNeedsItsMarker(t *testing.T) {
	t.Parallel()
	for name, meanwhile := range map[string]string{
		"data key deleted":           "",
		"another reader's lease":     "lanother-readers-marker",
		"another reader's new value": "vnewer",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, cacheaside.Config{})
			p := feedPolicy(t)
			fam, err := p.Family("feed")
			require.NoError(t, err)
			params := map[string]string{"user": "9"}
			bump(t, b.rdb, p, "feed", params)
			dkey, err := fam.DataKey(params, version(t, b.rdb, fam, params))
			require.NoError(t, err)

			src := newSource("old")
			g := newGate(src)
			got := make(chan string, 1)
			go func() {
				v, err := b.cache.GetVersioned(context.Background(), fam, params, g.load)
				if err != nil {
					v = []byte(err.Error())
				}
				got <- string(v)
			}()
			require.Equal(t, "old", <-g.loaded)
			held, err := b.rdb.Get(t.Context(), dkey).Result()
			require.NoError(t, err)
			require.Equal(t, byte('l'), held[0], "the reader holds the lease on %s", dkey)

			if meanwhile == "" {
				require.NoError(t, b.rdb.Unlink(t.Context(), dkey).Err())
			} else {
				require.NoError(t, b.rdb.Set(t.Context(), dkey, meanwhile, 0).Err())
			}
			close(g.release)
			require.Equal(t, "old", <-got, "the reader that started first may use what it loaded")

			if meanwhile == "" {
				n, err := b.rdb.Exists(t.Context(), dkey).Result()
				require.NoError(t, err)
				require.Zero(t, n, "the slow reader wrote its value to a data key that had been deleted")
			} else {
				now, err := b.rdb.Get(t.Context(), dkey).Result()
				require.NoError(t, err)
				require.Equal(t, meanwhile, now, "the slow reader overwrote what another reader put there")
			}
			require.EqualValues(t, 1, metric(t, b.reg, "invalidator_cacheaside_stale_stores_prevented_total"))
		})
	}
}
