// Package worker applies invalidation tasks to the cache.
//
// A Worker is an asynq.Handler plus the server settings that make
// invalidation safe and quick:
//
//   - invalidate:keys: a micro-batcher per cache target merges the keys of
//     concurrently running tasks into pipelined multi-key UNLINKs of at most
//     DeleteChunk keys; on a Redis Cluster the keys are grouped by hash slot
//     first, so no command crosses slots. A batch goes out as soon as one of
//     BatchInFlight slots is free, never after a timer, so at low load a
//     task's keys are sent at once and under load batches grow up to
//     BatchMaxKeys. Each task returns only when its own keys are gone; a
//     failed command fails (and retries) only the tasks whose keys it
//     carried. A sender with nothing to send waits 10ms for the next task,
//     then ends: the batcher keeps no goroutine while idle, so ProcessTask
//     works without Run and a Worker needs no Close.
//   - invalidate:family: SCAN MATCH on every master (ForEachMaster on a
//     cluster) with chunked UNLINKs and an optional rate limit. The cursor
//     (checkpoint.go) is saved every 100ms, and when the scan pauses, stops
//     or finishes, only ever past pages whose keys are gone, so a run that
//     times out or crashes resumes at most 100ms of scanning behind where it
//     stopped, never past a key it did not delete; a scan near its deadline
//     pauses on purpose and resumes at once, in a continuation task, without
//     spending a retry.
//   - invalidate:version: one Lua script sets the version to
//     max(current+1, Redis TIME in µs), or, when the version key is missing
//     (evicted, expired), to TIME plus keyspec.VersionRestartMargin, so
//     versions never go backwards even when the version key was evicted.
//     A bump that leaves a version further ahead of the clock than that
//     margin is counted (invalidator_version_ahead_of_clock_total) and
//     logged: an eviction could then restart below it.
//
// Failures are sorted. A poison task (undecodable payload, failed
// validation, unknown family, a foreign kind in our queues) can never
// succeed: it is archived at once with its reason (asynq.SkipRetry) and the
// worker goes on. Anything else retries with capped exponential backoff and
// jitter from its freshness class, then lands in the dead letter, from where
// `invalidator dead retry` replays it. Replays are harmless: invalidations
// only remove or advance.
//
// A worker that dies without a shutdown (kill -9, OOM) would leave its
// in-flight tasks to asynq's lease recovery, 60-120 s later. Run therefore
// writes a heartbeat with the worker's running tasks every
// HeartbeatInterval, and one worker of the fleet at a time, the rescuer,
// puts the tasks of workers silent for HeartbeatTimeout back to their queue
// (heartbeat.go, rescue.go): seconds instead of a minute. The rescuer works
// on asynq v0.26's own Redis keys; the tests fail if asynq changes them.
//
// An idle worker does not poll: Run's asynq server waits for a wake-up
// (internal/wake) that the module's producers push per task, with a safety
// poll of Config.SafetyPoll for tasks of other producers. asynq offers no
// way to be woken, so this rests on a go-redis hook around asynq v0.26's
// dequeue and forwarder scripts, on a client of the server's own made from
// Config.Queue's options; TestWaiterWithAsynq fails if an asynq upgrade
// changes what the hook relies on. Config.PollOnly turns it off.
//
// Example:
//
//	w, err := worker.New(worker.Config{
//		Queue:  queueRedis, // redis.UniversalClient
//		Cache:  cacheRedis, // may be the same client
//		Policy: policy,     // from keyspec.Load
//		Logger: slog.Default(),
//	})
//	if err != nil {
//		return err
//	}
//	return w.Run(ctx) // until ctx is cancelled, then a graceful shutdown
package worker
