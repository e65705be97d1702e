// Package wake lets idle workers wait for work instead of polling Redis.
//
// asynq v0.26's processor has no way to be woken: it runs its dequeue
// script once per served queue and, when every queue came back empty,
// sleeps TaskCheckInterval/2 plus jitter and tries again. An idle worker
// therefore costs the queue Redis one script call per queue every few
// milliseconds, and a task waits for the next poll.
//
// This package replaces that loop without forking asynq:
//
//   - Producers call Pusher.Wake after each enqueue. A Pusher pushes one
//     token per task onto the queue's wake list, Key(queue), from a
//     goroutine of its own, so the enqueue call never waits for it; under
//     load the pushes of many enqueues share one pipeline. The lists are
//     capped at MaxTokens.
//   - A Waiter is a go-redis hook on the client the asynq server uses. It
//     recognises asynq's dequeue script by its keys and its SHA-1, and when
//     a round over every served queue came back empty it blocks in BLPOP on
//     the wake lists of those queues (one idle worker per token: no herd)
//     for at most its safety poll. Woken, it runs the dequeue script for the
//     woken queue and returns that task in place of asynq's "empty". It also
//     recognises asynq's forwarder script, which moves due retries and
//     scheduled tasks to pending, and wakes a worker for what it moved.
//
// What it relies on in asynq v0.26 (TestWaiterWithAsynq and
// TestWaiterWakesForForwardedTasks, in the worker package, run a real asynq
// server and fail if an upgrade changes it): the
// dequeue script's text and keys (asynq:{q}:pending, :paused, :active,
// :lease; ARGV lease expiry and task key prefix), that Dequeue tries every
// served queue once per round and returns at the first task, that the
// returned message carries its own queue name (asynq acks and extends
// leases by msg.Queue), the forwarder script's text and keys, and that
// the processor sleeps before the next round only after an empty one.
//
// Producers that do not use this package (asynqmon's "run" button, plain
// asynq clients) push no token: their tasks start within the safety poll.
// One idle worker per fleet polls at each safety poll, the holder of a
// poll lock; the others answer that round "empty" without Redis and wait
// longer (Waiter.pollTurn), and a poll that finds a task wakes them for
// the rest of its queue.
package wake
