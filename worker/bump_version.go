package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/internal/versionlua"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// bumpScript advances a family's version. Versions are Redis TIME in
// microseconds, and a missing key restarts keyspec.VersionRestartMargin
// above TIME, so a version key lost to eviction or expiry restarts above
// every version handed out before, and data cached under an old version
// stays orphaned (see keyspec.VersionRestartMargin for the exact
// condition, which the script's lead output lets the caller check).
//
// A key holding a number below 10^14 was written by a release that counted
// milliseconds (10^14 µs is 1973; 10^14 ms is the year 5138). It is
// treated as missing: the jump into microseconds is a restart, and it must
// clear every microsecond version handed out before an old release, in a
// mixed fleet, recreated the key in milliseconds.
var bumpScript = redis.NewScript(`
-- KEYS[1] -> version key of one family instance
-- ARGV[1] -> TTL of the version key in milliseconds; "0" keeps it forever
-- ARGV[2] -> restart margin in microseconds (keyspec.VersionRestartMargin)
-- Output: {version, lead, from}: the new version; lead = version minus
--         Redis TIME in microseconds; from says what the key held before:
--         0 a version, advanced to max(version + 1, TIME);
--         1 nothing, 2 a millisecond version, 3 no usable version (not
--         decimal digits, or 2^53 or more, beyond what Lua counts exactly):
--         restarted at TIME + ARGV[2]
` + versionlua.Now + `
local now = version_now()
local raw = redis.call('GET', KEYS[1])
local from = 1
local cur
if raw then
  from = 3
  if string.match(raw, '^%d+$') then
    cur = tonumber(raw)
    if cur >= 9007199254740992 then
      cur = nil
    elseif cur < 100000000000000 then
      cur = nil
      from = 2
    else
      from = 0
    end
  end
end
local v
if cur then
  v = math.max(cur + 1, now)
else
  v = now + tonumber(ARGV[2])
end
local s = string.format('%d', v)
local ttl = tonumber(ARGV[1])
if ttl and ttl > 0 then
  redis.call('SET', KEYS[1], s, 'PX', ttl)
else
  redis.call('SET', KEYS[1], s)
end
return {v, v - now, from}
`)

// What a version key held before a bump (bumpScript's third output).
const (
	bumpFromVersion     = 0 // a version, advanced
	bumpFromMissing     = 1 // nothing: restarted above the clock
	bumpFromMillisecond = 2 // a version of a release that counted ms: restarted
	bumpFromUnusable    = 3 // no version this release can advance: restarted (the default case)
)

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
	return w.bump(ctx, cache.client, fam, key, "", log)
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
	margin := keyspec.VersionRestartMargin
	res, err := bumpScript.Run(ctx, cache, []string{key}, fam.VersionKeyTTL().Milliseconds(), margin.Microseconds()).Int64Slice()
	if err == nil && len(res) != 3 {
		err = fmt.Errorf("script answered %d items, want 3", len(res))
	}
	if err != nil {
		return fmt.Errorf("bump version of family %q (key %q): %w", fam.Name, key, err)
	}
	v, lead := res[0], time.Duration(res[1])*time.Microsecond
	w.metrics.eventAction(event, fam.Name, actionBump)
	ahead := lead > margin
	w.metrics.versionBumped(fam.Name, ahead)
	if ahead {
		// A restart now would begin at TIME+margin, below this version:
		// evicted before the clock catches up, the key would bring back
		// data of versions already superseded.
		log.Warn("version is further ahead of the cache Redis clock than the restart margin: "+
			"if the version key is evicted before the clock catches up, old data can be served again; "+
			"has the cache Redis's clock stepped back?",
			"version", v, "lead", lead, "margin", margin)
	}
	switch res[2] {
	case bumpFromVersion:
		log.Debug("version bumped", "version", v)
	case bumpFromMissing:
		log.Debug("version key was missing; restarted above the clock", "version", v)
	case bumpFromMillisecond:
		log.Debug("version key held a millisecond version of an older release; restarted in microseconds", "version", v)
	default:
		log.Warn("version key held no version this release can advance; restarted above the clock", "version", v)
	}
	return nil
}
