package enqueue

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// MaxCoalesceWindow bounds CoalesceConfig.Window. A call that arrives while
// a flush is in flight may wait up to the window, and the wait adds to the
// staleness window, so longer windows are refused rather than silently
// trading correctness for throughput.
const MaxCoalesceWindow = 10 * time.Millisecond

// DefaultCoalesceWindow is the window of a Client whose Config.Coalesce is
// nil: about a loaded round trip to the queue Redis, so a batch waits for
// the enqueue ahead of it, not for a timer, unless that enqueue is slow.
const DefaultCoalesceWindow = time.Millisecond

// coalesceMaxBytes bounds the summed encoded size of one batch's keys. It
// stays below the budget tasks.SplitKeys uses (MaxPayloadBytes minus the
// largest header, under 200 bytes), so a batch always makes exactly one task
// whatever the target and time.
const coalesceMaxBytes = tasks.MaxPayloadBytes - 1024

// coalesceMaxInFlight is how many flushes of one batch key may be in flight
// before new calls wait for one to finish. One is group commit: a round
// trip's worth of calls gathers behind each flush, so batches grow with the
// load and a lone call pays no wait at all.
const coalesceMaxInFlight = 1

// coalesceMaxLone is how many lone flushes (one caller's keys, sent by that
// caller) of one batch key may be in flight while no batch is: a call that
// finds only lone flushes ahead of it, fewer than this, goes at once
// instead of waiting for them. Lone flushes in flight are the sign of a
// light load, where calls meet by chance (a burst from a timer, requests
// at once), and a call that gathered behind them waited a round trip for
// nothing to share. Under load the flush ahead is a batch, so this lane
// stays closed and batches keep their size; it opens again only after a
// lull, for at most this many tasks.
const coalesceMaxLone = 4

// coalesceLoneRate bounds, per second, the calls that go alone beside
// another lone flush (burst: coalesceMaxLone). Producers calling in a loop
// keep lone flushes in flight all the time, and with no bound each of
// their calls was a task of its own: 4 producers made 100,000 tasks of
// 100,000 keys, and 10-13 k keys/s against 36 k with the calls gathered,
// the per-task ceiling that coalescing is there to avoid. Chance meetings
// at 1,000 calls/s use the lane a few hundred times a second.
const coalesceLoneRate = 1000

// CoalesceConfig tunes producer coalescing (group commit), which is on
// unless Config.NoCoalesce is set: a DeleteKeys
// call is enqueued at once when no task of its overrides is being enqueued,
// or only a few single calls' tasks are (a light load: calls met by
// chance); calls that arrive otherwise gather into one batch, enqueued as
// one task as soon as the enqueues ahead finish. This is how single-key invalidations
// from many request handlers get past the queue's per-task ceiling (about
// 17k tasks/s for one asynq worker process).
type CoalesceConfig struct {
	// Window bounds how long a batch waits for the enqueue in flight: it is
	// enqueued when the window, started by its first call, ends, even if
	// that enqueue is still in flight. So no call waits longer than Window
	// plus the enqueue round trip. Required: 0 < Window <= MaxCoalesceWindow;
	// 1 to 2 ms is typical.
	Window time.Duration

	// MaxKeys flushes a batch at once when it holds this many keys. A call
	// with more keys than MaxKeys is never coalesced: it is enqueued at once,
	// split like any other. 1 to tasks.MaxKeysPerTask. Default:
	// tasks.MaxKeysPerTask.
	MaxKeys int
}

func (cc *CoalesceConfig) validate() error {
	if cc.Window <= 0 || cc.Window > MaxCoalesceWindow {
		return fmt.Errorf("coalesce window %v is outside (0, %v]; 1ms to 2ms is typical (leave Coalesce nil for %v, or set NoCoalesce to turn coalescing off)",
			cc.Window, MaxCoalesceWindow, DefaultCoalesceWindow)
	}
	if cc.MaxKeys < 0 || cc.MaxKeys > tasks.MaxKeysPerTask {
		return fmt.Errorf("coalesce max keys %d is outside [1, %d] (0 means %d)",
			cc.MaxKeys, tasks.MaxKeysPerTask, tasks.MaxKeysPerTask)
	}
	return nil
}

// coalescer gathers concurrent DeleteKeys calls into batches by group
// commit, per distinct set of overrides (batch key), and enqueues each batch
// as one task. It is shared by a Client and every Client derived from it
// with With.
//
// A batch lives in three stages: open (in batches, taking keys, its window's
// timer running), detached (being flushed, apart from any caller) and done
// (result set, done closed). A call whose key has no flush in flight, or
// only lone ones and fewer than maxLone, makes a lone batch: detached at
// once, never open, flushed by its caller. Otherwise its keys join the
// open batch, which is detached by exactly one of: the end of the flush in
// flight (and then flushed by that flush's goroutine), its timer, the call
// that fills it, Close. Nothing runs while no call is waiting.
type coalescer struct {
	window  time.Duration
	maxKeys int
	maxLone int // coalesceMaxLone; 1 in the tests of the batches behind one flush
	// lane allows the calls that go alone beside another lone flush
	// (coalesceLoneRate).
	lane *rate.Limiter
	// afterFunc runs f after d and returns a function that cancels it, like
	// time.AfterFunc(d, f).Stop. Tests replace it to end windows by hand.
	afterFunc func(d time.Duration, f func()) (stop func() bool)
	// send enqueues a detached batch; enqueueBatch but in tests, which
	// replace it to hold a flush in flight.
	send func(ctx context.Context, b *batch) (string, error)
	// yield lets the callers a flush just told run before it takes the
	// next batch; runtime.Gosched but in tests, which make calls there.
	yield func()

	mu       sync.Mutex
	closed   bool                 // guarded by mu
	batches  map[batchKey]*batch  // guarded by mu; the open batches
	inFlight map[batchKey]flights // guarded by mu; detached batches not yet done, no zero entries
	flushes  sync.WaitGroup       // detached batches not yet done; Add under mu
}

// flights counts the detached batches of one batch key not yet done: all of
// them, and the lone ones among them (see coalesceMaxLone).
type flights struct{ all, lone int }

// batchKey separates calls that must not share a task: those made through
// With with different overrides. The target and policy are the same for
// every Client sharing a coalescer.
type batchKey struct {
	queue       string
	maxRetry    int
	hasMaxRetry bool
	timeout     time.Duration
}

// batch is one future task. keys, bytes, calls and at are guarded by the
// coalescer's mu while the batch is open and immutable once it is detached;
// id and err are written once by flush, before done is closed.
type batch struct {
	key      batchKey
	client   *Client // the first caller's Client: its overrides equal the others'
	class    *keyspec.Class
	keys     []string
	bytes    int
	calls    int
	at       time.Time   // the earliest caller's time, so lag is never under-reported
	stop     func() bool // stops the window's timer; nil for a batch never open
	detached bool
	lone     bool // never open: its caller's keys alone, flushed by that caller

	done chan struct{}
	id   string
	err  error
}

func newCoalescer(cc CoalesceConfig) *coalescer {
	if cc.MaxKeys == 0 {
		cc.MaxKeys = tasks.MaxKeysPerTask
	}
	return &coalescer{
		window:  cc.Window,
		maxKeys: cc.MaxKeys,
		maxLone: coalesceMaxLone,
		lane:    rate.NewLimiter(coalesceLoneRate, coalesceMaxLone),
		afterFunc: func(d time.Duration, f func()) func() bool {
			return time.AfterFunc(d, f).Stop
		},
		send:     enqueueBatch,
		yield:    runtime.Gosched,
		batches:  make(map[batchKey]*batch),
		inFlight: make(map[batchKey]flights),
	}
}

// fits reports whether keys may join a batch at all: a call that could never
// share a task goes through the normal split path.
func (co *coalescer) fits(keys []string) (int, bool) {
	if len(keys) > co.maxKeys {
		return 0, false
	}
	n := encodedKeysLen(keys)
	return n, n <= coalesceMaxBytes
}

// deleteKeys adds keys to a batch of c's overrides and waits for that
// batch's task. keys are valid and fit one batch (see fits).
func (co *coalescer) deleteKeys(ctx context.Context, c *Client, class *keyspec.Class, keys []string, size int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("enqueue delete keys: %w", err)
	}
	b, lone, err := co.join(c, class, keys, size, c.b.now())
	if err != nil {
		return nil, fmt.Errorf("enqueue delete keys: %w", err)
	}
	if lone {
		co.flushLone(ctx, b)
		if b.err != nil {
			return nil, fmt.Errorf("enqueue delete keys: %w", b.err)
		}
		return []string{b.id}, nil
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		// The keys stay in the batch: pulling them out would need a search
		// under the lock, and enqueueing them anyway is harmless.
		return nil, fmt.Errorf("enqueue delete keys: gave up waiting for the coalesced task, which may not be enqueued yet: call again, deletes are idempotent: %w", ctx.Err())
	}
	if b.err != nil {
		return nil, fmt.Errorf("enqueue delete keys (coalesced: %d calls, %d keys in one task): %w", b.calls, len(b.keys), b.err)
	}
	return []string{b.id}, nil
}

// join adds keys to a batch of c's overrides and returns it. With no flush
// of those overrides in flight, or only lone ones and fewer than maxLone,
// the batch holds keys alone and is returned detached with lone set, for
// the caller to flush itself (flushLone).
// Otherwise keys join the open batch, opening one (and starting its window)
// if there is none; a batch that keys would overflow is flushed at once and
// keys open the next, and a batch that keys fill is flushed at once too.
func (co *coalescer) join(c *Client, class *keyspec.Class, keys []string, size int, at time.Time) (b *batch, lone bool, err error) {
	o := c.b.opts
	// The shards of a sharded class share batches: a batch goes to the
	// shard of its first key (Builder.message). Batches per shard would be
	// smaller by the shard count, and cost the queue as many more tasks;
	// deletes commute, so the other keys need no shard of their own.
	key := batchKey{queue: o.Queue, timeout: o.Timeout}
	if o.MaxRetry != nil {
		key.maxRetry, key.hasMaxRetry = *o.MaxRetry, true
	}

	co.mu.Lock()
	defer co.mu.Unlock()
	if co.closed {
		return nil, false, ErrClosed
	}
	b = co.batches[key]
	if b != nil && (len(b.keys)+len(keys) > co.maxKeys || b.bytes+size > coalesceMaxBytes) {
		co.detachLocked(key, b)
		b = nil
	}
	if b == nil {
		b = &batch{
			key:    key,
			client: c,
			class:  class,
			keys:   make([]string, 0, min(co.maxKeys, 16)),
			at:     at,
			done:   make(chan struct{}),
		}
		// Open it only behind a flush in flight: there is nothing else
		// to wait for, and a lone caller must not pay a window. Behind
		// lone flushes only, fewer than maxLone, it goes alone too, as
		// often as the lane allows.
		if f := co.inFlight[key]; f.all >= coalesceMaxInFlight &&
			(f.lone < f.all || f.lone >= co.maxLone || !co.lane.Allow()) {
			co.batches[key] = b
			b.stop = co.afterFunc(co.window, func() { co.expire(key, b) })
		} else {
			b.lone = true
		}
	}
	b.keys = append(b.keys, keys...)
	b.bytes += size
	b.calls++
	if at.Before(b.at) {
		b.at = at
	}
	switch {
	case b.lone: // nobody else's keys are in it
		co.markDetachedLocked(key, b)
		return b, true, nil
	case len(b.keys) == co.maxKeys:
		co.detachLocked(key, b)
	}
	return b, false, nil
}

// flushLone enqueues b, which join returned lone (only its caller's keys,
// detached), on the caller's goroutine and with the caller's ctx: the plain
// enqueue of a call without coalescing. Handing it to a flush goroutine, as
// a batch of several callers is, cost a lone call about 25 µs (a serial
// BenchmarkDeleteKeys). Batches that gathered behind it go on in a
// goroutine, as behind any flush, so the caller waits for no one else's.
func (co *coalescer) flushLone(ctx context.Context, b *batch) {
	sent := false
	defer func() {
		if !sent {
			// The send panicked, on the caller's goroutine, which may
			// recover (net/http does): end the flush as a failed one, or
			// its in-flight count would make every later call of these
			// overrides wait out a window, and Close wait forever. The
			// panic goes on.
			b.err = errors.New("the enqueue panicked")
			co.endLone(b)
		}
	}()
	b.id, b.err = co.send(ctx, b)
	sent = true
	co.endLone(b)
}

// endLone tells b's caller and ends its flush (see flushLone).
func (co *coalescer) endLone(b *batch) {
	close(b.done)
	if co.openCalls(b.key) == 0 {
		next := co.finish(b) // a batch opened since is flushed like any other
		co.flushes.Done()    // after finish: the next batch's Add happens before it
		if next != nil {
			go co.run(b.key, next)
		}
		return
	}
	// Calls wait behind it: yield to them, and to this caller, before
	// taking their batch, as flush does; not on the caller's time.
	go func() {
		co.yieldWhileGrowing(b.key)
		next := co.finish(b)
		co.flushes.Done()
		co.run(b.key, next)
	}()
}

// openCalls is the number of calls in the open batch of key.
func (co *coalescer) openCalls(key batchKey) int {
	co.mu.Lock()
	defer co.mu.Unlock()
	if b := co.batches[key]; b != nil {
		return b.calls
	}
	return 0
}

func (co *coalescer) isClosed() bool {
	co.mu.Lock()
	defer co.mu.Unlock()
	return co.closed
}

// expire ends the window of b, unless b was already detached: the window
// bounds the wait even while the flush ahead of b is stuck.
func (co *coalescer) expire(key batchKey, b *batch) {
	co.mu.Lock()
	defer co.mu.Unlock()
	if !b.detached {
		co.detachLocked(key, b)
	}
}

// detachLocked closes b to new keys and flushes it in its own goroutine, so
// no caller's context or wait decides the fate of the others' keys. co.mu
// must be held and b must not be detached yet.
func (co *coalescer) detachLocked(key batchKey, b *batch) {
	co.markDetachedLocked(key, b)
	go co.run(key, b)
}

// markDetachedLocked closes b to new keys and counts it in flight; the
// caller then flushes it. co.mu must be held and b must not be detached yet.
func (co *coalescer) markDetachedLocked(key batchKey, b *batch) {
	b.detached = true
	if b.stop != nil {
		b.stop()
	}
	if co.batches[key] == b {
		delete(co.batches, key)
	}
	f := co.inFlight[key]
	f.all++
	if b.lone {
		f.lone++
	}
	co.inFlight[key] = f
	co.flushes.Add(1)
}

// run flushes b, then each batch that gathered behind it, on this one
// goroutine. Under load a chain of flushes never ends, and a goroutine per
// batch put a spawn and a stack growth through go-redis on the critical
// path of every round trip (about a tenth of the producer's CPU).
func (co *coalescer) run(key batchKey, b *batch) {
	for b != nil {
		b = co.flush(key, b)
	}
}

// flush enqueues b as one task and hands the result to its callers. It
// returns the batch that gathered behind b, detached, for the caller to
// flush next, or nil.
func (co *coalescer) flush(key batchKey, b *batch) *batch {
	defer co.flushes.Done() // last: the next batch's Add happens before it
	// A context of its own: a caller that gives up must not fail the others.
	b.id, b.err = co.send(context.Background(), b)
	// The callers are told first, and this goroutine yields before it
	// takes the next batch, again while that batch grows (at most
	// coalesceMaxYields times): a caller that calls again at once (a
	// producer in a loop) joins that batch, not the one after it. Told
	// after it, the producers split into two groups taking turns, and a
	// task carried half of them (14 keys a task with 32 single-key
	// producers; 27 now, and a third less CPU per key). A call made during
	// the yields pays no window: its batch goes out right after, or at its
	// window's end if this goroutine is not scheduled again before.
	close(b.done)
	co.yieldWhileGrowing(key)
	return co.finish(b)
}

// yieldWhileGrowing yields while the open batch of key grows, at most
// coalesceMaxYields times, so the callers a flush just told can join it.
func (co *coalescer) yieldWhileGrowing(key batchKey) {
	for n, i := -1, 0; i < coalesceMaxYields; i++ {
		calls := co.openCalls(key)
		if calls == n {
			break
		}
		n = calls
		co.yield()
	}
}

// finish ends the flush of b: one flush fewer in flight, and the batch that
// gathered behind it, detached, for the caller to flush next, or nil.
func (co *coalescer) finish(b *batch) *batch {
	co.mu.Lock()
	defer co.mu.Unlock()
	key := b.key
	f := co.inFlight[key]
	f.all--
	if b.lone {
		f.lone--
	}
	if f.all == 0 {
		delete(co.inFlight, key) // keeps the map as small as the load
	} else {
		co.inFlight[key] = f
	}
	if next := co.batches[key]; next != nil && f.all < coalesceMaxInFlight {
		co.markDetachedLocked(key, next)
		return next
	}
	return nil
}

// coalesceMaxYields bounds how many times a flush yields for its callers
// to rejoin before it takes the next batch (see flush).
const coalesceMaxYields = 4

// coalesceFlushTimeout bounds one batch's enqueue, so that a hung queue
// Redis (say, a client configured without read timeouts) fails the batch's
// callers and lets Close return instead of holding them forever.
const coalesceFlushTimeout = 10 * time.Second

// enqueueBatch enqueues b as one task, within coalesceFlushTimeout.
func enqueueBatch(ctx context.Context, b *batch) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, coalesceFlushTimeout)
	defer cancel()
	m, err := b.client.b.keysMessage(b.keys, b.at, b.class)
	if err != nil {
		return "", err
	}
	return b.client.Enqueue(ctx, m)
}

// close refuses new calls, flushes the open batches at once (not waiting for
// the flushes in flight ahead of them) and waits until every batch has been
// enqueued. It returns the errors of the batches it flushed; their callers
// get them too.
func (co *coalescer) close() error {
	co.mu.Lock()
	if co.closed {
		co.mu.Unlock()
		return nil
	}
	co.closed = true
	open := make([]*batch, 0, len(co.batches))
	for key, b := range co.batches {
		co.detachLocked(key, b)
		open = append(open, b)
	}
	co.mu.Unlock()

	co.flushes.Wait()
	var errs []error
	for _, b := range open {
		if b.err != nil {
			errs = append(errs, fmt.Errorf("enqueue: flush %d coalesced keys on close: %w", len(b.keys), b.err))
		}
	}
	return errors.Join(errs...)
}

// encodedKeysLen is an upper bound of the bytes keys take in a payload: each
// key plus its length, a uvarint of at most 3 bytes for MaxKeyBytes.
func encodedKeysLen(keys []string) int {
	n := 0
	for _, k := range keys {
		n += len(k) + 3
	}
	return n
}
