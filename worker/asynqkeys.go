package worker

// asynq v0.26's own Redis keys, which are not asynq's public API
// (internal/base/base.go and the Lua of internal/rdb/rdb.go). Two features
// read and change them, because asynq offers no API for what they do:
//
//   - the rescuer (rescue.go) puts a crashed worker's tasks back in seconds
//     instead of asynq's 60-120 s lease recovery;
//   - the dead-letter record (deadletter.go) sweeps asynq's archive and puts
//     chosen archived tasks back in batches.
//
// The layout they depend on:
//
//   - asynq:{<queue>}:active, a list of the ids of the tasks being run;
//   - asynq:{<queue>}:lease, a sorted set of those ids by lease expiry;
//   - asynq:{<queue>}:pending, the list Dequeue takes from with RPOPLPUSH
//     (from its right end) into active, and a task is pushed on to run;
//   - asynq:{<queue>}:archived, a sorted set of task ids scored by archive
//     time in Unix seconds;
//   - asynq:{<queue>}:t:<id>, the task hash, whose field "state" holds the
//     task's state ("active", "pending", "archived", ...);
//   - asynq:servers, a sorted set of "asynq:servers:{<host>:<pid>:<uuid>}"
//     by expiry (Unix seconds), one per running asynq server.
//
// TestAsynqLayout (rescue) and TestAsynqKeyLayout (dead letter) check all of
// this against a real asynq server, so an asynq upgrade that changes it
// fails the tests rather than silently disabling either feature.

// asynqQueueKey is asynq's key name of one of a queue's structures; the
// {<queue>} hash tag puts all of a queue's keys in one cluster slot.
func asynqQueueKey(queue, name string) string { return "asynq:{" + queue + "}:" + name }

func asynqTaskKey(queue, id string) string { return asynqQueueKey(queue, "t:"+id) }
func asynqArchivedKey(queue string) string { return asynqQueueKey(queue, "archived") }
func asynqPendingKey(queue string) string  { return asynqQueueKey(queue, "pending") }
func asynqActiveKey(queue string) string   { return asynqQueueKey(queue, "active") }
func asynqLeaseKey(queue string) string    { return asynqQueueKey(queue, "lease") }

const asynqServersKey = "asynq:servers"
