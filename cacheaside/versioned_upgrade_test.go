package cacheaside_test

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/tasks"
	"github.com/invalidator/invalidator/worker"
)

// The scripts of the release that counted versions in milliseconds,
// verbatim, to replay a rolling upgrade: old workers and old readers beside
// new ones on one cache.
var (
	msBumpScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]))
local t = redis.call('TIME')
local v = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if cur and cur + 1 > v then
  v = cur + 1
end
local s = string.format('%d', v)
local ttl = tonumber(ARGV[1])
if ttl and ttl > 0 then
  redis.call('SET', KEYS[1], s, 'PX', ttl)
else
  redis.call('SET', KEYS[1], s)
end
return v
`)
	msReadScript = redis.NewScript(`
local ver = redis.call('GET', KEYS[1])
if not ver then
  local t = redis.call('TIME')
  ver = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  local ttl = tonumber(ARGV[4])
  if ttl and ttl > 0 then
    redis.call('SET', KEYS[1], ver, 'PX', ttl)
  else
    redis.call('SET', KEYS[1], ver)
  end
elseif not string.match(ver, '^%d+$') then
  return redis.error_reply('version key does not hold a decimal version')
end
local key = ARGV[1] .. ver
local v = redis.call('GET', key)
if v then
  return {ver, v}
end
redis.call('SET', key, ARGV[2], 'PX', ARGV[3])
return {ver, false}
`)
)

// microsecondVersions is where versions of this release begin: a version
// below it was counted in milliseconds by an older release.
const microsecondVersions = 100_000_000_000_000

// A rolling upgrade runs old workers and readers (versions in ms) beside new
// ones (µs) on one cache. The claims the README makes about it:
//   - at write rates the old release was safe at, a mixed fleet never
//     serves data older than the last write, through evictions, whoever
//     recreates the key. The old release was safe while no version ran
//     ahead of the clock: a bump in a later millisecond than every earlier
//     bump and every read that recreated the key. (A bump in the same
//     millisecond as a recreating read set the version one ahead, and an
//     eviction followed by another read in that millisecond served the
//     data stored before the bump, with old scripts alone.)
//   - at any rate, a mixed fleet serves old data only at a millisecond
//     version: the old release's own burst bug, never made worse, and gone
//     with the last old process, whatever the order of the upgrade.
//
// Writes and reads run one at a time, in a random order with evictions in
// between; each write's bump is applied before the next step.
func TestRollingUpgradeNeverReusesAVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		paced bool // each write in a later millisecond than every step before it
	}{{"one write a millisecond", true}, {"bursts", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 0))

			b := setup(t, cacheaside.Config{})
			p := feedPolicy(t)
			fam, err := p.Family("feed")
			require.NoError(t, err)
			params := map[string]string{"user": "1"}
			vkey, err := fam.VersionKey(params)
			require.NoError(t, err)
			prefix, err := fam.DataKeyPrefix(params)
			require.NoError(t, err)
			vttl := fam.VersionKeyTTL().Milliseconds()
			w, err := worker.New(worker.Config{Queue: b.rdb, Policy: p, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			require.NoError(t, err)
			ctx := t.Context()

			gen := 0         // the source of truth: the number of the last write
			var lastMs int64 // Redis TIME in ms at the end of the last step, when paced
			write := func(old bool) {
				if tc.paced {
					for redisMillis(t, b.rdb) <= lastMs {
					}
				}
				gen++
				if old {
					require.NoError(t, msBumpScript.Run(ctx, b.rdb, []string{vkey}, vttl).Err())
					return
				}
				payload, err := tasks.Marshal(tasks.BumpVersion{Family: "feed", Params: params, EnqueuedAt: time.Now()})
				require.NoError(t, err)
				require.NoError(t, w.ProcessTask(ctx, asynq.NewTask(tasks.KindBumpVersion, payload)))
			}
			// read returns the write the data reflects and the version it
			// was read at.
			read := func(old bool) (int, int64) {
				if !old {
					v, err := b.cache.GetVersioned(ctx, fam, params, func(context.Context) ([]byte, error) {
						return []byte(strconv.Itoa(gen)), nil
					})
					require.NoError(t, err)
					n, err := strconv.Atoi(string(v))
					require.NoError(t, err)
					ver, err := b.rdb.Get(ctx, vkey).Int64()
					require.NoError(t, err)
					return n, ver
				}
				res, err := msReadScript.Run(ctx, b.rdb, []string{vkey}, prefix, "lold", 10_000, vttl).Slice()
				require.NoError(t, err)
				ver, err := strconv.ParseInt(res[0].(string), 10, 64)
				require.NoError(t, err)
				if res[1] == nil { // leased: load and store, as the old Cache did
					require.NoError(t, b.rdb.Set(ctx, prefix+res[0].(string), "v"+strconv.Itoa(gen), time.Minute).Err())
					return gen, ver
				}
				n, err := strconv.Atoi(strings.TrimPrefix(res[1].(string), "v"))
				require.NoError(t, err)
				return n, ver
			}

			var stale, staleMs, evictions int
			for range 600 {
				switch r := rng.IntN(20); {
				case r < 8:
					write(r < 4)
				case r < 18:
					n, ver := read(r < 13)
					if n != gen {
						stale++
						require.Less(t, ver, int64(microsecondVersions),
							"read data of write %d after write %d at microsecond version %d: a version was handed out twice", n, gen, ver)
						staleMs++
					}
				default:
					evictions++
					require.NoError(t, b.rdb.Del(ctx, vkey).Err())
				}
				if tc.paced {
					// Whatever the step was, the next write waits for
					// the millisecond after it.
					lastMs = redisMillis(t, b.rdb)
				}
			}
			t.Logf("%d writes, %d evictions; %d stale reads, all at millisecond versions", gen, evictions, stale)
			if tc.paced {
				require.Zero(t, staleMs, "at one write a millisecond the old release was safe, and a mixed fleet must be")
			}
		})
	}
}

// redisMillis is the Redis server's TIME in milliseconds.
func redisMillis(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	tm, err := rdb.Time(t.Context()).Result()
	require.NoError(t, err)
	return tm.UnixMilli()
}
