package cacheaside

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/internal/versionlua"
	"github.com/invalidator/invalidator/keyspec"
)

// versionedReadScript reads a version family's current version and its data
// in one round trip. Both keys share the hash tag of the version key's
// prefix (keyspec.Family.VersionKey), so this works on Redis Cluster; the
// data key is not declared in KEYS because its name depends on the version
// read here, which is why keyspec guarantees the shared slot.
var versionedReadScript = redis.NewScript(`
-- KEYS[1] -> version key of one family instance (keyspec Family.VersionKey)
-- ARGV[1] -> data key prefix: the data key of this instance up to and
--            including "#v"; the version in decimal completes it
--            (keyspec Family.DataKey)
-- ARGV[2] -> this reader's lease marker
-- ARGV[3] -> lease duration in milliseconds
-- ARGV[4] -> TTL in milliseconds of a version key this script creates; "0"
--            for none
-- ARGV[5] -> restart margin in microseconds (keyspec.VersionRestartMargin)
-- Output: {version, value}: the current version as a decimal string, and the
--         data key's string at that version; value is nil when the data key
--         was missing and now holds ARGV[2] for ARGV[3] ms (this reader
--         holds the lease). A missing version key is created at Redis TIME
--         in microseconds plus ARGV[5], as the worker's bump restarts one,
--         so a version key lost to eviction restarts above every version
--         handed out before and old data stays orphaned.
` + versionlua.Now + `
local ver = redis.call('GET', KEYS[1])
if not ver then
  ver = string.format('%d', version_now() + tonumber(ARGV[5]))
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

// GetVersioned reads one instance of a version family: the version key and
// the data key at that version, in one round trip. On a miss it takes the
// lease on that data key and stores there, under the version it read: a
// value loaded before a version bump lands on the orphaned old key, and the
// next read, at the new version, loads afresh. The TTL comes from the family
// (its own, else its class's), with jitter. A missing version key is
// created keyspec.VersionRestartMargin above Redis TIME in microseconds,
// exactly as the worker's bump restarts one, so it lands above every
// version handed out before it went missing; its TTL is the one the worker
// gives it.
func (c *Cache) GetVersioned(ctx context.Context, fam *keyspec.Family, params map[string]string, load Loader) ([]byte, error) {
	vkey, err := fam.VersionKey(params)
	if err != nil {
		return nil, fmt.Errorf("cacheaside: %w", err)
	}
	// The script appends the version it reads to the prefix.
	prefix, err := fam.DataKeyPrefix(params)
	if err != nil {
		return nil, fmt.Errorf("cacheaside: %w", err)
	}
	look := func(ctx context.Context, marker string) (lookupResult, error) {
		return c.readVersioned(ctx, fam, params, vkey, prefix, marker)
	}
	ttl := func() time.Duration { return fam.JitteredTTL(c.cfg.Rand) }
	return c.get(ctx, "v"+vkey, vkey, look, ttl, load)
}

// readVersioned runs versionedReadScript and checks its answer against
// keyspec's naming of data keys.
func (c *Cache) readVersioned(ctx context.Context, fam *keyspec.Family, params map[string]string, vkey, prefix, marker string) (lookupResult, error) {
	res, err := versionedReadScript.Run(ctx, c.rdb, []string{vkey}, prefix, marker,
		px(c.cfg.LeaseTTL), px(fam.VersionKeyTTL()), keyspec.VersionRestartMargin.Microseconds()).Slice()
	if err != nil {
		return lookupResult{}, fmt.Errorf("read version key %q: %w", vkey, err)
	}
	if len(res) != 2 {
		return lookupResult{}, fmt.Errorf("read version key %q: script answered %d items, want 2", vkey, len(res))
	}
	vs, _ := res[0].(string)
	ver, err := strconv.ParseInt(vs, 10, 64)
	if err != nil || strconv.FormatInt(ver, 10) != vs {
		return lookupResult{}, fmt.Errorf("read version key %q: it holds %q, not a version the worker wrote; delete it", vkey, vs)
	}
	key, err := fam.DataKey(params, ver)
	if err != nil {
		return lookupResult{}, fmt.Errorf("cacheaside: %w", err)
	}
	if res[1] == nil {
		return lookupResult{dataKey: key, leased: true, versionKey: vkey, version: vs}, nil
	}
	s, ok := res[1].(string)
	if !ok {
		return lookupResult{}, fmt.Errorf("read data key %q: script answered %T, want a string", key, res[1])
	}
	return lookupResult{dataKey: key, value: []byte(s)}, nil
}
