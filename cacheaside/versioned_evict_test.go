package cacheaside_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/tasks"
	"github.com/invalidator/invalidator/worker"
)

// An evicted version key must never bring back data cached under a version
// handed out before the eviction, whatever the bump rate. The test bumps one
// entity eight times per read, far faster than one bump a millisecond
// (versions counted in ms then ran ahead of Redis TIME), stores data tagged
// with the write it reflects at each version it reads, deletes the version
// key as eviction would, and goes on writing and reading: every read must
// reflect the last write. Whoever recreates the key, a reader or the
// worker's next bump, must start above every version handed out.
func TestEvictedVersionKeyNeverServesOldData(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"reader", "worker"} {
		t.Run(first+" recreates the key", func(t *testing.T) {
			t.Parallel()
			b := setup(t, cacheaside.Config{})
			p := feedPolicy(t)
			fam, err := p.Family("feed")
			require.NoError(t, err)
			params := map[string]string{"user": "1"}
			vkey, err := fam.VersionKey(params)
			require.NoError(t, err)
			w, err := worker.New(worker.Config{Queue: b.rdb, Policy: p, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			require.NoError(t, err)

			// gen is the source of truth: the number of the last write.
			var gen atomic.Int64
			write := func() {
				gen.Add(1)
				payload, err := tasks.Marshal(tasks.BumpVersion{Family: "feed", Params: params, EnqueuedAt: time.Now()})
				require.NoError(t, err)
				require.NoError(t, w.ProcessTask(t.Context(), asynq.NewTask(tasks.KindBumpVersion, payload)))
			}
			read := func() int64 {
				v, err := b.cache.GetVersioned(t.Context(), fam, params, func(context.Context) ([]byte, error) {
					return []byte(strconv.FormatInt(gen.Load(), 10)), nil
				})
				require.NoError(t, err)
				n, err := strconv.ParseInt(string(v), 10, 64)
				require.NoError(t, err)
				return n
			}

			// The burst: eight writes per read, data at every eighth version.
			for range 100 {
				for range 8 {
					write()
				}
				require.Equal(t, gen.Load(), read(), "before the eviction")
			}
			ver, err := b.rdb.Get(t.Context(), vkey).Int64()
			require.NoError(t, err)
			tm, err := b.rdb.Time(t.Context()).Result()
			require.NoError(t, err)
			t.Logf("after %d bumps the version is %d; Redis TIME is %d µs", gen.Load(), ver, tm.UnixMicro())

			require.NoError(t, b.rdb.Del(t.Context(), vkey).Err()) // evicted
			if first == "reader" {
				require.Equal(t, gen.Load(), read(), "the first read after the eviction")
			}
			for i := range 100 {
				write()
				require.Equal(t, gen.Load(), read(), "write %d after the eviction: the read returned data of an older write", i+1)
			}
		})
	}
}
