package redistest_test

import (
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

func TestNewDB_DatabasesDoNotShareKeys(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, b := redistest.NewDB(t), redistest.NewDB(t)
	require.NotEqual(t, a.Index, b.Index)

	require.NoError(t, a.Client.Set(ctx, "k", "a", 0).Err())
	n, err := b.Client.Exists(ctx, "k").Result()
	require.NoError(t, err)
	require.Zero(t, n, "database %d sees a key written to database %d", b.Index, a.Index)

	// Flushing one must not touch the other.
	require.NoError(t, b.Client.FlushDB(ctx).Err())
	v, err := a.Client.Get(ctx, "k").Result()
	require.NoError(t, err)
	require.Equal(t, "a", v)
}

func TestNewDB_ParallelTestsGetTheirOwnDatabase(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	owner := map[int]string{} // guarded by mu: database index -> subtest
	t.Cleanup(func() {
		// Runs after every parallel subtest has finished.
		require.Len(t, owner, 8)
	})
	for i := range 8 {
		t.Run("db"+string(rune('a'+i)), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			db := redistest.NewDB(t)
			mu.Lock()
			prev, taken := owner[db.Index]
			owner[db.Index] = t.Name()
			mu.Unlock()
			require.False(t, taken, "database %d handed to both %s and %s", db.Index, prev, t.Name())

			size, err := db.Client.DBSize(ctx).Result()
			require.NoError(t, err)
			require.Zero(t, size, "a new database must be empty")
			require.NoError(t, db.Client.Set(ctx, "owner", t.Name(), 0).Err())
			got, err := db.Client.Get(ctx, "owner").Result()
			require.NoError(t, err)
			require.Equal(t, t.Name(), got)
		})
	}
}

func TestNewDB_URLReachesTheSameDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := redistest.NewDB(t)
	require.NoError(t, db.Client.Set(ctx, "via-client", "yes", 0).Err())

	opts, err := redis.ParseURL(db.URL)
	require.NoError(t, err)
	require.Equal(t, db.Index, opts.DB)
	other := redis.NewClient(opts)
	t.Cleanup(func() { require.NoError(t, other.Close()) })
	v, err := other.Get(ctx, "via-client").Result()
	require.NoError(t, err)
	require.Equal(t, "yes", v)
}

func TestClient_IsAFreshDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := redistest.Client(t)
	_, ok := c.(*redis.Client)
	require.True(t, ok, "Client returns %T, want *redis.Client", c)
	size, err := c.DBSize(ctx).Result()
	require.NoError(t, err)
	require.Zero(t, size)
}

func TestNewDB_ClientClosedAtCleanup(t *testing.T) {
	t.Parallel()
	var db *redistest.DB
	fatal := redistest.NewStandIn(t.Name()).Run(func(ft testing.TB) {
		db = redistest.NewDB(ft)
		require.NoError(t, db.Client.Ping(t.Context()).Err())
	})
	require.Empty(t, fatal)
	require.ErrorIs(t, db.Client.Ping(t.Context()).Err(), redis.ErrClosed)
}

func TestNewDB_WithoutMainSaysHowToFixIt(t *testing.T) {
	t.Parallel()
	fatal := redistest.NewStandIn(t.Name()).Run(redistest.RequireNoHarness)
	require.Contains(t, fatal, "Main was not called")
	require.Contains(t, fatal, "os.Exit(redistest.Main(m))")
}

func TestLookRedisServer_MissingSaysHowToInstall(t *testing.T) {
	t.Parallel()
	_, err := redistest.LookRedisServer("redis-server-that-does-not-exist")
	require.Error(t, err)
	require.Contains(t, err.Error(), "apt-get install redis-server")
	require.Contains(t, err.Error(), redistest.EnvURL)
}
