package enqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// MaxCoalesceWindow bounds CoalesceConfig.Window. Every caller of a batch
// may wait up to the window, and the wait adds to the staleness window, so
// longer windows are refused rather than silently trading correctness for
// throughput.
const MaxCoalesceWindow = 10 * time.Millisecond

// coalesceMaxBytes bounds the summed encoded size of one batch's keys. It
// stays below the budget tasks.SplitKeys uses (MaxPayloadBytes minus the
// largest header, under 200 bytes), so a batch always makes exactly one task
// whatever the target and time.
const coalesceMaxBytes = tasks.MaxPayloadBytes - 1024

// CoalesceConfig turns on producer coalescing: DeleteKeys calls made within
// Window of the first one of a batch become one task. This is how
// single-key invalidations from many request handlers get past the queue's
// per-task ceiling (about 17k tasks/s for one asynq worker process).
type CoalesceConfig struct {
	// Window is how long the first call of a batch waits for others to
	// join; no call waits longer than Window plus the enqueue round trip.
	// Required: 0 < Window <= MaxCoalesceWindow; 1 to 2 ms is typical.
	Window time.Duration

	// MaxKeys flushes a batch at once when it holds this many keys. A call
	// with more keys than MaxKeys is never coalesced: it is enqueued at once,
	// split like any other. 1 to tasks.MaxKeysPerTask. Default:
	// tasks.MaxKeysPerTask.
	MaxKeys int
}

func (cc *CoalesceConfig) validate() error {
	if cc.Window <= 0 || cc.Window > MaxCoalesceWindow {
		return fmt.Errorf("coalesce window %v is outside (0, %v]; 1ms to 2ms is typical, or leave Coalesce nil to turn coalescing off",
			cc.Window, MaxCoalesceWindow)
	}
	if cc.MaxKeys < 0 || cc.MaxKeys > tasks.MaxKeysPerTask {
		return fmt.Errorf("coalesce max keys %d is outside [1, %d] (0 means %d)",
			cc.MaxKeys, tasks.MaxKeysPerTask, tasks.MaxKeysPerTask)
	}
	return nil
}

// coalescer gathers concurrent DeleteKeys calls into batches, one open batch
// per distinct set of overrides, and enqueues each batch as one task. It is
// shared by a Client and every Client derived from it with With.
//
// A batch lives in three stages: open (in batches, taking keys, its timer
// running), detached (removed from batches by exactly one of: its timer,
// the call that fills it, Close; then flushed in its own goroutine) and done
// (result set, done closed). Nothing runs while no batch is open.
type coalescer struct {
	window  time.Duration
	maxKeys int
	// afterFunc runs f after d and returns a function that cancels it, like
	// time.AfterFunc(d, f).Stop. Tests replace it to end windows by hand.
	afterFunc func(d time.Duration, f func()) (stop func() bool)

	mu      sync.Mutex
	closed  bool                // guarded by mu
	batches map[batchKey]*batch // guarded by mu; the open batches
	flushes sync.WaitGroup      // detached batches not yet done; Add under mu
}

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
	client   *Client // the first caller's Client: its overrides equal the others'
	class    *keyspec.Class
	keys     []string
	bytes    int
	calls    int
	at       time.Time // the earliest caller's time, so lag is never under-reported
	stop     func() bool
	detached bool

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
		afterFunc: func(d time.Duration, f func()) func() bool {
			return time.AfterFunc(d, f).Stop
		},
		batches: make(map[batchKey]*batch),
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

// deleteKeys adds keys to the open batch of c's overrides and waits for that
// batch's task. keys are valid and fit one batch (see fits).
func (co *coalescer) deleteKeys(ctx context.Context, c *Client, class *keyspec.Class, keys []string, size int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("enqueue delete keys: %w", err)
	}
	b, err := co.join(c, class, keys, size, c.now())
	if err != nil {
		return nil, fmt.Errorf("enqueue delete keys: %w", err)
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		// The keys stay in the batch: pulling them out would need a search
		// under the lock, and enqueueing them anyway is harmless.
		return nil, fmt.Errorf("enqueue delete keys: gave up waiting for the coalesced task (its keys are still enqueued with it): %w", ctx.Err())
	}
	if b.err != nil {
		return nil, fmt.Errorf("enqueue delete keys (coalesced: %d calls, %d keys in one task): %w", b.calls, len(b.keys), b.err)
	}
	return []string{b.id}, nil
}

// join adds keys to the open batch of c's overrides, opening one (and
// starting its window) if there is none. A batch that keys would overflow is
// flushed at once and keys open the next; a batch that keys fill is flushed
// at once too.
func (co *coalescer) join(c *Client, class *keyspec.Class, keys []string, size int, at time.Time) (*batch, error) {
	key := batchKey{queue: c.opts.queue, timeout: c.opts.timeout}
	if c.opts.maxRetry != nil {
		key.maxRetry, key.hasMaxRetry = *c.opts.maxRetry, true
	}

	co.mu.Lock()
	defer co.mu.Unlock()
	if co.closed {
		return nil, ErrClosed
	}
	b := co.batches[key]
	if b != nil && (len(b.keys)+len(keys) > co.maxKeys || b.bytes+size > coalesceMaxBytes) {
		co.detachLocked(key, b)
		b = nil
	}
	if b == nil {
		b = &batch{
			client: c,
			class:  class,
			keys:   make([]string, 0, min(co.maxKeys, 16)),
			at:     at,
			done:   make(chan struct{}),
		}
		co.batches[key] = b
		b.stop = co.afterFunc(co.window, func() { co.expire(key, b) })
	}
	b.keys = append(b.keys, keys...)
	b.bytes += size
	b.calls++
	if at.Before(b.at) {
		b.at = at
	}
	if len(b.keys) == co.maxKeys {
		co.detachLocked(key, b)
	}
	return b, nil
}

func (co *coalescer) isClosed() bool {
	co.mu.Lock()
	defer co.mu.Unlock()
	return co.closed
}

// expire ends the window of b, unless b was already detached.
func (co *coalescer) expire(key batchKey, b *batch) {
	co.mu.Lock()
	defer co.mu.Unlock()
	if !b.detached {
		co.detachLocked(key, b)
	}
}

// detachLocked closes b to new keys and flushes it in its own goroutine, so
// no caller's context or wait decides the fate of the others' keys. co.mu
// must be held and b must be open.
func (co *coalescer) detachLocked(key batchKey, b *batch) {
	b.detached = true
	b.stop()
	delete(co.batches, key)
	co.flushes.Add(1)
	go co.flush(b)
}

// flush enqueues b as one task and hands the result to its callers. It uses
// a context of its own: a caller that gives up must not fail the others, and
// the Redis client's timeouts bound the round trip.
func (co *coalescer) flush(b *batch) {
	defer co.flushes.Done()
	t := tasks.DeleteKeys{Keys: b.keys, Target: b.client.target, EnqueuedAt: b.at}
	b.id, b.err = b.client.enqueue(context.Background(), t, b.class)
	close(b.done)
}

// close refuses new calls, flushes the open batches and waits until every
// batch has been enqueued. It returns the errors of the batches it flushed;
// their callers get them too.
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
