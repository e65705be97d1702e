package wake

import (
	"context"
	crand "crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultSafetyPoll is how long an idle worker waits for a wake-up before
// it polls its queues anyway, for tasks no wake-up announces (foreign
// producers, a lost push).
const DefaultSafetyPoll = time.Second

// MaxSafetyPoll bounds SafetyPoll. The task a wait hands over is dequeued
// with the lease asynq computed before the wait (asynq keeps that expiry
// for the task), and asynq's lease is 30 s: a task handed over with an
// expired lease is never acked and runs again. A wait of at most 10 s
// (plus BLPOP's rounding) leaves the task most of its lease.
const MaxSafetyPoll = 10 * time.Second

// minLeaseLeft is the least lease a handed-over task must still have; a
// wait that ran longer (a slow Redis) returns "empty" instead, and asynq's
// next round dequeues the task with a fresh lease.
const minLeaseLeft = 15 * time.Second

// failedWaitPause is how long a worker polls instead of waiting after a
// wait failed (the wake lists' Redis node unreachable): a dead {wake} node
// must not hold every idle worker's dequeue loop in BLPOP while the
// queues' own nodes are healthy.
const failedWaitPause = 30 * time.Second

// WaiterConfig configures a Waiter.
type WaiterConfig struct {
	// Queues are the asynq queues the server serves. Required.
	Queues []string

	// SafetyPoll is the longest a round of empty queues waits for a
	// wake-up; BLPOP counts whole seconds, so it is rounded down to them,
	// and at least 1s. Default: DefaultSafetyPoll.
	SafetyPoll time.Duration

	// Pusher receives the wake-ups for the tasks asynq's forwarder moves to
	// pending (due retries, scheduled tasks). Default: nil, none; those
	// tasks then start at the next safety poll.
	Pusher *Pusher

	// ForwardInterval is asynq's DelayedTaskCheckInterval. When set, one
	// worker per interval, across the fleet of workers serving the same
	// queues, runs asynq's forwarder scripts; the others' forwarder ticks
	// cost one small script every few intervals instead of two scripts per queue at every one. A due retry still
	// waits at most about one interval. Default: 0, every worker forwards
	// at every tick, as asynq does.
	ForwardInterval time.Duration

	// Logger receives the one error logged if asynq's scripts are not the
	// ones this package knows. Default: discard.
	Logger *slog.Logger
}

// Stats counts what a Waiter saw; tests use them to prove the hook is
// live, so an asynq upgrade cannot turn it into silent polling.
type Stats struct {
	Dequeues   int64 // asynq dequeue script calls seen
	EmptyRound int64 // rounds in which every served queue was empty
	Woken      int64 // waits ended by a token of a served queue
	Handed     int64 // of those, the woken queue had a task, returned to asynq
	Stale      int64 // of those, the woken queue had none: the wait went on
	Timeouts   int64 // waits that reached the safety poll
	Forwarded  int64 // tasks asynq's forwarder moved to pending, announced
	FwdSkipped int64 // forwarder script calls skipped: another worker's turn
	Foreign    int64 // calls shaped like asynq's scripts with other script text
	// PollSkipped counts dequeue calls answered "empty" without Redis: the
	// round after a safety poll that was another worker's turn.
	PollSkipped int64
	// PollWakes counts tokens pushed for tasks a safety poll found (tasks
	// of producers that push none), to wake the rest of the fleet.
	PollWakes int64
}

// Waiter is the go-redis hook that makes an idle asynq server wait for a
// wake-up instead of polling (see the package doc). Add it to a client of
// its own, used only by the asynq server, with Attach.
type Waiter struct {
	rdb     redis.UniversalClient
	served  map[string]bool
	keys    []string // the wake lists of the served queues, then stopKey
	stopKey string
	timeout time.Duration
	pusher  *Pusher
	log     *slog.Logger
	id      string // this Waiter's value in the forward lock

	fwdInterval time.Duration
	fwdKey      string     // the forward lock of this set of queues
	fwdMu       sync.Mutex // guards fwdAt and fwdMine
	fwdNext     time.Time  // when this worker asks for the forward lock next
	fwdMine     bool       // it got it the last time it asked

	pollKey string // the safety-poll lock of this set of queues and safety poll

	mu      sync.Mutex      // guards empty, stopped, pollUntil, skip and polling
	empty   map[string]bool // served queues found empty since the last task or wait
	stopped bool
	// pollUntil: after a failed wait, rounds poll until then.
	pollUntil time.Time
	// skip: the safety poll that just ended was another worker's turn, so
	// the round that follows is answered "empty" without Redis.
	skip bool
	// polling: the round under way follows a safety poll this worker took;
	// a task it finds came from a producer that pushes no tokens.
	polling bool

	dequeues, emptyRounds, woken, handed, stale, timeouts, forwarded, fwdSkipped, foreign atomic.Int64
	pollSkipped, pollWakes                                                                atomic.Int64
	warnOnce                                                                              sync.Once
}

// NewWaiter returns a Waiter for the served queues; Attach it to the
// asynq server's client.
func NewWaiter(cfg WaiterConfig) (*Waiter, error) {
	if len(cfg.Queues) == 0 {
		return nil, errors.New("wake: WaiterConfig.Queues is empty")
	}
	if cfg.SafetyPoll < 0 || cfg.SafetyPoll > MaxSafetyPoll {
		return nil, fmt.Errorf("wake: SafetyPoll %s is outside 0..%s (asynq's 30 s lease must outlast a wait)", cfg.SafetyPoll, MaxSafetyPoll)
	}
	timeout := cfg.SafetyPoll
	if timeout == 0 {
		timeout = DefaultSafetyPoll
	}
	timeout = max(time.Second, timeout.Truncate(time.Second))
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id := make([]byte, 8)
	_, _ = crand.Read(id)
	w := &Waiter{
		served:      make(map[string]bool, len(cfg.Queues)),
		id:          hex.EncodeToString(id),
		stopKey:     keyPrefix + "@stop:" + hex.EncodeToString(id),
		fwdInterval: cfg.ForwardInterval,
		timeout:     timeout,
		pusher:      cfg.Pusher,
		log:         log,
		empty:       make(map[string]bool, len(cfg.Queues)),
	}
	for _, q := range cfg.Queues {
		if !w.served[q] {
			w.served[q] = true
			w.keys = append(w.keys, Key(q))
		}
	}
	w.keys = append(w.keys, w.stopKey)
	// Workers with the same queues and the same forward interval share a
	// forward lock; a worker with other queues, or another interval,
	// forwards on its own, so one slow member cannot hold due retries
	// back for a fleet with a shorter interval.
	qs := slices.Sorted(maps.Keys(w.served))
	sum := sha1.Sum([]byte(strings.Join(qs, "\x00") + "\x00" + cfg.ForwardInterval.String()))
	w.fwdKey = keyPrefix + "@forward:" + hex.EncodeToString(sum[:8])
	// The same for the safety poll: a worker with a shorter safety poll
	// polls on its own, so a fleet member with a long one cannot stretch
	// the others' bound for tasks that come without a token.
	sum = sha1.Sum([]byte(strings.Join(qs, "\x00") + "\x00poll\x00" + timeout.String()))
	w.pollKey = keyPrefix + "@poll:" + hex.EncodeToString(sum[:8])
	return w, nil
}

// Attach adds w to rdb's hooks; rdb is then the client w blocks on and
// runs the dequeue script with. Give it a client of its own (Dedicated):
// hooks cannot be removed, and w blocks that client's callers.
func (w *Waiter) Attach(rdb redis.UniversalClient) {
	w.rdb = rdb
	rdb.AddHook(w)
}

// SafetyPoll is the wait's bound after rounding.
func (w *Waiter) SafetyPoll() time.Duration { return w.timeout }

// Stop ends a wait in progress at once and makes later rounds poll, so
// asynq's Shutdown, which waits for its dequeue loop, is not held up by
// the safety poll. Call it before the asynq server's Shutdown.
func (w *Waiter) Stop() {
	w.mu.Lock()
	already := w.stopped
	w.stopped = true
	w.mu.Unlock()
	if already || w.rdb == nil {
		return
	}
	// The stop list is this Waiter's own: the token wakes no other worker.
	ctx, cancel := context.WithTimeout(internal(context.Background()), pushTimeout)
	defer cancel()
	if w.fwdInterval > 0 {
		_ = forwardLockScript.Run(ctx, w.rdb, []string{w.fwdKey}, w.id, 0).Err()
	}
	// Hand the safety poll to another worker at its next timeout.
	_ = forwardLockScript.Run(ctx, w.rdb, []string{w.pollKey}, w.id, 0).Err()
	_, _ = w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, w.stopKey, "stop")
		p.Expire(ctx, w.stopKey, time.Minute) // nobody pops it if no wait was in progress
		return nil
	})
}

// Stats returns the counts so far.
func (w *Waiter) Stats() Stats {
	return Stats{
		Dequeues: w.dequeues.Load(), EmptyRound: w.emptyRounds.Load(), Woken: w.woken.Load(),
		Handed: w.handed.Load(), Stale: w.stale.Load(), Timeouts: w.timeouts.Load(), Forwarded: w.forwarded.Load(), FwdSkipped: w.fwdSkipped.Load(),
		Foreign: w.foreign.Load(), PollSkipped: w.pollSkipped.Load(), PollWakes: w.pollWakes.Load(),
	}
}

// DialHook implements redis.Hook.
func (w *Waiter) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook implements redis.Hook; asynq never pipelines the
// scripts a Waiter looks for.
func (w *Waiter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook implements redis.Hook.
func (w *Waiter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isInternal(ctx) {
			return next(ctx, cmd)
		}
		c, ok := classify(cmd.Args())
		switch {
		case !ok:
			return next(ctx, cmd)
		case !c.known:
			w.foreign.Add(1)
			w.warnOnce.Do(func() {
				w.log.Error("asynq's dequeue or forward script is not the one this worker knows (asynq upgraded?); "+
					"idle workers fall back to polling every safety poll", "sha", c.sha)
			})
			return next(ctx, cmd)
		}
		if c.forward && w.served[c.queue] && !w.forwardTurn() {
			// Another worker of the fleet forwards this interval: as if
			// nothing were due.
			w.fwdSkipped.Add(1)
			cmd.(*redis.Cmd).SetVal(int64(0))
			return nil
		}
		if !c.forward && w.skipCall(c.queue) {
			// Another worker polls the queues this safety poll: answer as
			// if this queue were empty, without a script call.
			w.pollSkipped.Add(1)
			cmd.SetErr(redis.Nil)
			return w.afterDequeue(cmd, c, redis.Nil)
		}
		err := next(ctx, cmd)
		if c.forward {
			if n, ierr := cmd.(*redis.Cmd).Int64(); err == nil && ierr == nil && n > 0 && w.served[c.queue] {
				w.forwarded.Add(n)
				w.pusher.Wake(c.queue, int(n))
			}
			return err
		}
		return w.afterDequeue(cmd, c, err)
	}
}

// skipCall reports whether a dequeue call for queue is answered "empty"
// without Redis: it belongs to the round after a safety poll that was
// another worker's turn.
func (w *Waiter) skipCall(queue string) bool {
	if !w.served[queue] {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.skip && !w.stopped
}

// forwardLockScript takes, keeps or releases the forward lock of a set of
// queues, and the safety-poll lock. The holder renews its own lock, so it never loses it to a tick
// that comes a little early, and a Redis whose clock does not run (the
// embedded test double) still lets the one worker forward.
//
// KEYS[1] -> invalidator:{wake}:@forward:<hash of the served queues>
// ARGV[1] -> this Waiter's id
// ARGV[2] -> lock TTL in ms; 0 releases the lock if this Waiter holds it
// Output: 1 if this Waiter holds the lock now, else 0.
var forwardLockScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if ARGV[2] == '0' then
  if cur == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

// forwardTurn reports whether this worker runs asynq's forwarder scripts
// in this tick. The holder of the fleet's forward lock renews it at every
// tick (the calls of one tick come within a few milliseconds) for 9/10 of
// the interval, so it keeps it while it lives, and a stopping holder
// releases it: no due task waits much more than one interval. A worker
// that did not get it asks again only after 8 to 24 intervals: a fleet of
// N costs the queue Redis about N/16 small scripts per interval, not 2
// scripts per queue per worker (at 2 to 6 intervals, the forward lock was
// a fifth of what 64 idle workers sent the queue Redis). If the holder
// dies without releasing it (kill -9), another takes over within 25
// intervals (about 6 s at the worker's 250ms): due retries and scheduled
// tasks wait that much longer, once. A failed call forwards, as asynq
// would.
func (w *Waiter) forwardTurn() bool {
	if w.fwdInterval <= 0 {
		return true
	}
	w.fwdMu.Lock()
	defer w.fwdMu.Unlock()
	now := time.Now()
	if now.Before(w.fwdNext) {
		return w.fwdMine
	}
	ctx, cancel := context.WithTimeout(internal(context.Background()), pushTimeout)
	defer cancel()
	got, err := forwardLockScript.Run(ctx, w.rdb, []string{w.fwdKey}, w.id, (w.fwdInterval * 9 / 10).Milliseconds()).Int()
	w.fwdMine = err != nil || got == 1
	if w.fwdMine {
		w.fwdNext = now.Add(w.fwdInterval / 2)
	} else {
		w.fwdNext = now.Add(8*w.fwdInterval + rand.N(16*w.fwdInterval))
		w.fwdMine = false
	}
	return w.fwdMine
}

// afterDequeue runs after asynq's dequeue script for one queue. When it
// was the last served queue found empty this round, it waits for a
// wake-up and returns a woken queue's task in place of the empty result.
func (w *Waiter) afterDequeue(cmd redis.Cmder, c call, err error) error {
	w.dequeues.Add(1)
	if !w.served[c.queue] {
		return err
	}
	w.mu.Lock()
	switch {
	case err == nil:
		clear(w.empty) // a task: the next round starts afresh
		polled := w.polling
		w.polling = false
		w.mu.Unlock()
		if polled {
			// A safety poll found a task no token announced (asynqmon, a
			// plain asynq client): the other idle workers wait for their
			// own turn to poll, which may be seconds, so wake them for
			// what else is there.
			go w.wakeForPolled(c.queue)
		}
		return nil
	case !errors.Is(err, redis.Nil):
		w.mu.Unlock()
		return err
	}
	w.empty[c.queue] = true
	if len(w.empty) < len(w.served) || w.stopped || time.Now().Before(w.pollUntil) {
		w.mu.Unlock()
		return err
	}
	clear(w.empty)
	// After a safety poll that was another worker's turn, wait longer:
	// the poll holder covers the tasks that come without a token.
	long := w.skip
	w.skip, w.polling = false, false
	w.mu.Unlock()
	w.emptyRounds.Add(1)
	msg, ok := w.wait(c.leaseArg, long)
	if !ok {
		return err // asynq sleeps its TaskCheckInterval and polls a round
	}
	rc := cmd.(*redis.Cmd)
	rc.SetErr(nil)
	rc.SetVal(msg)
	return nil
}

// wait blocks for a token of a served queue, for at most the safety poll,
// then dequeues from that queue with asynq's own script and lease expiry
// (leaseArg, asynq's ARGV[1] of the empty call), so the lease in Redis is
// the one asynq keeps for the task. A token whose task is gone (taken by a
// worker that was busy and dequeued without waiting, or by another worker)
// is dropped and the wait goes on: under a steady flow the lists fill with
// such tokens, and handing "empty" back to asynq would cost its poll
// interval's sleep each time. It reports false for the safety poll, a
// stop, or an error.
//
// long makes the wait 2 to 4 safety polls (at most MaxSafetyPoll, so the
// lease check below still holds): the wait of a worker whose last safety
// poll was another worker's turn. Its next turn is that far away anyway,
// and each wait it ends early costs a BLPOP and a poll-lock script.
func (w *Waiter) wait(leaseArg any, long bool) (string, bool) {
	d := w.timeout
	if long {
		d = min(MaxSafetyPoll, d*time.Duration(2+rand.N(3)))
	}
	deadline := time.Now().Add(d)
	lease, _ := leaseArg.(int64)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			w.timeouts.Add(1)
			w.pollTurn()
			return "", false
		}
		// BLPOP counts whole seconds: round up, at most a second late.
		// The context bounds the call too (the dedicated client honours
		// context deadlines), so an unreachable node costs one wait, not
		// go-redis's BLPOP timeout plus 10 s.
		block := (left + time.Second - 1).Truncate(time.Second)
		ctx, cancel := context.WithTimeout(internal(context.Background()), block+500*time.Millisecond)
		kv, err := w.rdb.BLPop(ctx, block, w.keys...).Result()
		cancel()
		switch {
		case errors.Is(err, redis.Nil):
			w.timeouts.Add(1)
			w.pollTurn()
			return "", false
		case err != nil:
			w.failed(err)
			return "", false
		}
		q, ok := queueOf(kv[0])
		if !ok || !w.served[q] {
			return "", false // the stop token
		}
		w.woken.Add(1)
		if lease > 0 && time.Until(time.Unix(lease, 0)) < minLeaseLeft {
			// asynq's lease for this round is mostly spent: let its next
			// round take the task with a fresh one. The token is gone,
			// so the round must not wait again: it polls once.
			w.timeouts.Add(1)
			return "", false
		}
		ctx, cancel = context.WithTimeout(internal(context.Background()), 5*time.Second)
		res, err := dequeueScript.Run(ctx, w.rdb, dequeueKeys(q), leaseArg, taskKeyPrefix(q)).Text()
		cancel()
		switch {
		case err == nil:
			w.handed.Add(1)
			return res, true
		case !errors.Is(err, redis.Nil):
			return "", false
		}
		w.stale.Add(1)
	}
}

// pollTurn decides, at the end of a safety poll, whether the round that
// follows polls Redis. One worker of the fleet serving the same queues
// with the same safety poll does, per safety poll: the holder of the poll
// lock, which it renews at each of its timeouts (for 9/10 of a safety
// poll, so it keeps it while idle) and gives up in Stop. The others' next
// round is answered "empty" without Redis (skipCall). A fleet of N idle
// workers thus costs the queue Redis one dequeue round per safety poll,
// plus a BLPOP and one small script per worker, instead of a script per
// queue per worker; and a worker that lost its turn waits 2 to 4 safety
// polls before it asks again (wait). Tasks of producers that push no
// token start within one safety poll while the holder is idle, and within
// about five when it is busy (its lock lapses) or dead; a poll that finds
// one wakes the other workers for the rest (wakeForPolled). A failed call
// polls, as before.
func (w *Waiter) pollTurn() {
	ctx, cancel := context.WithTimeout(internal(context.Background()), pushTimeout)
	defer cancel()
	got, err := forwardLockScript.Run(ctx, w.rdb, []string{w.pollKey}, w.id, (w.timeout * 9 / 10).Milliseconds()).Int()
	w.mu.Lock()
	defer w.mu.Unlock()
	mine := err != nil || got == 1
	w.skip, w.polling = !mine, mine
}

// wakeForPolled pushes a token for each task left in queue's pending list
// after a safety poll found one there, so idle workers take the rest of a
// batch from a producer that pushes no tokens at once, not one by one as
// each gets its turn to poll.
func (w *Waiter) wakeForPolled(queue string) {
	if w.pusher == nil {
		return
	}
	ctx, cancel := context.WithTimeout(internal(context.Background()), pushTimeout)
	defer cancel()
	n, err := w.rdb.LLen(ctx, asynqKey(queue, "pending")).Result()
	if err != nil || n <= 0 {
		return
	}
	n = min(n, MaxTokens)
	w.pollWakes.Add(n)
	w.pusher.Wake(queue, int(n))
}

// failed records a failed wait: the rounds of the next failedWaitPause
// poll instead of waiting.
func (w *Waiter) failed(err error) {
	w.mu.Lock()
	stopped := w.stopped
	w.pollUntil = time.Now().Add(failedWaitPause)
	w.mu.Unlock()
	if !stopped {
		w.log.Warn("waiting for a wake-up failed; idle workers poll for a while", "err", err.Error(), "for", failedWaitPause.String())
	}
}

func asynqKey(q, name string) string { return "asynq:{" + q + "}:" + name }
func taskKeyPrefix(q string) string  { return asynqKey(q, "t:") }

func dequeueKeys(q string) []string {
	return []string{asynqKey(q, "pending"), asynqKey(q, "paused"), asynqKey(q, "active"), asynqKey(q, "lease")}
}

// call is a recognised script call.
type call struct {
	queue    string
	forward  bool // forwardScript, else dequeueScript
	known    bool // the script is the known one (by SHA-1)
	sha      string
	leaseArg any // dequeue's ARGV[1]
}

var (
	dequeueSHA = dequeueScript.Hash()
	forwardSHA = forwardScript.Hash()
)

// classify recognises asynq's dequeue and forward script calls by command
// and keys: EVAL or EVALSHA, then the keys asynq v0.26 passes.
func classify(args []any) (call, bool) {
	if len(args) < 3 {
		return call{}, false
	}
	name, _ := args[0].(string)
	if !strings.EqualFold(name, "evalsha") && !strings.EqualFold(name, "eval") {
		return call{}, false
	}
	script, _ := args[1].(string)
	numKeys, ok := args[2].(int)
	// Only the dequeue (4 keys) and forward (2 keys) scripts are of
	// interest; every other script call of the asynq server (an ack per
	// task) leaves here, before the keys are copied.
	if !ok || (numKeys != 4 && numKeys != 2) || len(args) < 3+numKeys {
		return call{}, false
	}
	keys := make([]string, numKeys)
	for i := range keys {
		if keys[i], ok = args[3+i].(string); !ok {
			return call{}, false
		}
	}
	argv := args[3+numKeys:]
	sha := script
	if strings.EqualFold(name, "eval") {
		sum := sha1.Sum([]byte(script))
		sha = hex.EncodeToString(sum[:])
	}
	switch {
	case numKeys == 4 && len(argv) == 2:
		q, ok := queueOfKey(keys[0], "pending")
		if !ok || keys[1] != asynqKey(q, "paused") || keys[2] != asynqKey(q, "active") || keys[3] != asynqKey(q, "lease") {
			return call{}, false
		}
		return call{queue: q, known: sha == dequeueSHA, sha: sha, leaseArg: argv[0]}, true
	case numKeys == 2 && len(argv) == 4:
		q, ok := queueOfKey(keys[1], "pending")
		if !ok || (keys[0] != asynqKey(q, "scheduled") && keys[0] != asynqKey(q, "retry")) {
			return call{}, false
		}
		return call{queue: q, forward: true, known: sha == forwardSHA, sha: sha}, true
	}
	return call{}, false
}

// queueOfKey returns q of a key asynq:{q}:<name>.
func queueOfKey(key, name string) (string, bool) {
	rest, ok := strings.CutPrefix(key, "asynq:{")
	if !ok {
		return "", false
	}
	q, ok := strings.CutSuffix(rest, "}:"+name)
	return q, ok && q != ""
}

// internalKey marks the Waiter's own calls, which it must not intercept.
type internalKey struct{}

func internal(ctx context.Context) context.Context {
	return context.WithValue(ctx, internalKey{}, true)
}
func isInternal(ctx context.Context) bool { return ctx.Value(internalKey{}) != nil }

// Dedicated returns a new client with rdb's options, for the asynq server
// and its Waiter: the hook and the blocked connection stay off the
// caller's client. It supports the clients redisconn opens (*redis.Client,
// including Sentinel failover clients, and *redis.ClusterClient); for other
// types it returns an error, and the caller polls.
func Dedicated(rdb redis.UniversalClient) (redis.UniversalClient, error) {
	switch c := rdb.(type) {
	case *redis.Client:
		o := *c.Options()
		o.ContextTimeoutEnabled = true // the wait's deadline must reach the socket
		// The copy shares rdb's *MaintNotificationsConfig, which go-redis
		// writes (under a lock of rdb's own) when a server refuses the
		// handshake, while NewClient reads it: a data race (-race, in
		// TestWorkload). The project never sets it, so a fresh default is
		// the same setting.
		o.MaintNotificationsConfig = nil
		return redis.NewClient(&o), nil
	case *redis.ClusterClient:
		o := *c.Options()
		o.ContextTimeoutEnabled = true
		o.MaintNotificationsConfig = nil // shared with rdb, as above
		return redis.NewClusterClient(&o), nil
	}
	return nil, fmt.Errorf("wake: cannot make a client of its own from a %T; idle workers poll instead", rdb)
}
