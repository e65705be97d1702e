package wake

import "github.com/redis/go-redis/v9"

// The two asynq v0.26 scripts a Waiter recognises, copied verbatim from
// asynq's internal/rdb/rdb.go. A call is taken for one of them only if it
// carries this exact script (by SHA-1 for EVALSHA), so a changed script in
// an asynq upgrade is never misread; TestWaiterWithAsynq (worker package)
// fails instead.

// dequeueScript is asynq's dequeueCmd: it moves one task of a queue from
// pending to active and leases it.
//
// KEYS[1] -> asynq:{<qname>}:pending
// KEYS[2] -> asynq:{<qname>}:paused
// KEYS[3] -> asynq:{<qname>}:active
// KEYS[4] -> asynq:{<qname>}:lease
// ARGV[1] -> initial lease expiration Unix time
// ARGV[2] -> task key prefix (asynq:{<qname>}:t:)
// Output: the encoded TaskMessage, or nil when the queue has no
// processable task (empty or paused).
const dequeueSrc = `
if redis.call("EXISTS", KEYS[2]) == 0 then
	local id = redis.call("RPOPLPUSH", KEYS[1], KEYS[3])
	if id then
		local key = ARGV[2] .. id
		redis.call("HSET", key, "state", "active")
		redis.call("HDEL", key, "pending_since")
		redis.call("ZADD", KEYS[4], ARGV[1], id)
		return redis.call("HGET", key, "msg")
	end
end
return nil`

var dequeueScript = redis.NewScript(dequeueSrc)

// forwardScript is asynq's forwardCmd: it moves up to 100 due tasks of a
// queue's scheduled or retry set to pending (or to their group).
//
// KEYS[1] -> asynq:{<qname>}:scheduled or asynq:{<qname>}:retry
// KEYS[2] -> asynq:{<qname>}:pending
// ARGV[1] -> current Unix time in seconds
// ARGV[2] -> task key prefix
// ARGV[3] -> current Unix time in nanoseconds
// ARGV[4] -> group key prefix
// Output: the number of tasks moved.
const forwardSrc = `
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, 100)
for _, id in ipairs(ids) do
	local taskKey = ARGV[2] .. id
	local group = redis.call("HGET", taskKey, "group")
	if group and group ~= '' then
	    redis.call("ZADD", ARGV[4] .. group, ARGV[1], id)
		redis.call("ZREM", KEYS[1], id)
		redis.call("HSET", taskKey,
				   "state", "aggregating")
	else
		redis.call("LPUSH", KEYS[2], id)
		redis.call("ZREM", KEYS[1], id)
		redis.call("HSET", taskKey,
				   "state", "pending",
				   "pending_since", ARGV[3])
	end
end
return table.getn(ids)`

var forwardScript = redis.NewScript(forwardSrc)
