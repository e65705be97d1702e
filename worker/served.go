package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// liveRecordsScript returns the records of the fleet's live workers, judged
// by Redis TIME, so that a producer's clock does not matter.
var liveRecordsScript = redis.NewScript(`
-- KEYS[1] -> invalidator:{fleet}:workers (hash: worker id -> "<expiry ms> <seq> <json>")
-- Output: the JSON part of every record whose expiry is not past
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  local exp, body = string.match(v, '^(%d+) %d+ (.*)$')
  if exp and tonumber(exp) >= now then
    out[#out + 1] = body
  end
end
return out
`)

// QueueServed reports whether a running worker serves queue, so that a
// producer can say when a task will wait for one to start (it is kept, not
// lost). A live heartbeat record that lists the queue answers in one round
// trip. Only when none does, asynq's server registry is read too, for
// asynq servers that run without invalidator's heartbeats (a server of
// one's own built from Worker.ServerConfig, or an older build).
//
// A live record that does not decode (a newer build's) counts as serving
// every queue: the answer errs towards "served", so that a warning built on
// it is never wrong. A worker killed a moment ago may count as serving
// until its heartbeat timeout passes.
func QueueServed(ctx context.Context, rdb redis.UniversalClient, queue string) (bool, error) {
	bodies, err := liveRecordsScript.Run(ctx, rdb, []string{fleetWorkersKey}).StringSlice()
	if err != nil {
		return false, fmt.Errorf("read worker heartbeats: %w", err)
	}
	for _, b := range bodies {
		var body recordBody
		if err := json.Unmarshal([]byte(b), &body); err != nil || slices.Contains(body.Queues, queue) {
			return true, nil
		}
	}
	// asynq's Inspector takes no context; its calls are bounded by the
	// client's timeouts.
	servers, err := asynq.NewInspectorFromRedisClient(rdb).Servers()
	if err != nil {
		return false, fmt.Errorf("read asynq servers: %w", err)
	}
	for _, s := range servers {
		if _, ok := s.Queues[queue]; ok && s.Status == "active" {
			return true, nil
		}
	}
	return false, nil
}
