package worker

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// bumpScript advances a family's version. Versions come from Redis TIME, so
// a version key lost to eviction or expiry restarts above every version
// handed out before, and data cached under an old version stays orphaned.
var bumpScript = redis.NewScript(`
-- KEYS[1] -> version key of one family instance
-- ARGV[1] -> TTL of the version key in milliseconds; "0" keeps it forever
-- Output: the new version: max(current + 1, Redis TIME in milliseconds)
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

func (w *Worker) applyBumpVersion(ctx context.Context, st *policyState, t tasks.BumpVersion, log *slog.Logger) error {
	fam, err := st.policy.Family(t.Family)
	if err != nil {
		return poison(err)
	}
	key, err := fam.VersionKey(t.Params)
	if err != nil {
		return poison(err)
	}
	cache, err := w.target(t.Target)
	if err != nil {
		return err
	}
	return w.bump(ctx, cache, fam, key, "", log)
}

// bump advances the version at key, or in shadow and off mode only says it
// would. event labels the metrics; "" for a direct BumpVersion task.
func (w *Worker) bump(ctx context.Context, cache redis.UniversalClient, fam *keyspec.Family, key, event string, log *slog.Logger) error {
	log = log.With("family", fam.Name, "version_key", key)
	switch fam.Mode {
	case keyspec.ModeOff:
		w.metrics.eventAction(event, fam.Name, actionOff)
		log.Debug("family is off: version not bumped")
		return nil
	case keyspec.ModeShadow:
		w.metrics.eventAction(event, fam.Name, actionShadow)
		w.metrics.wouldDelete(event, fam.Name, 1)
		log.Info("shadow mode: would bump version")
		return nil
	}
	v, err := bumpScript.Run(ctx, cache, []string{key}, fam.VersionKeyTTL().Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("bump version of family %q (key %q): %w", fam.Name, key, err)
	}
	w.metrics.eventAction(event, fam.Name, actionBump)
	log.Debug("version bumped", "version", v)
	return nil
}
