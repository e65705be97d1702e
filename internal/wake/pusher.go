package wake

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// keyPrefix starts every wake list. The lists of all queues share the
// {wake} hash tag, so on a Redis Cluster they sit in one slot and one
// BLPOP covers every queue a worker serves. The price is that all wake-up
// traffic lands on one master even when the queues themselves are spread
// over the cluster (sharded classes). It is one LPUSH, LTRIM and EXPIRE
// per flush per queue, pipelined and merged under load, far below the cost
// of the enqueue itself; a tag per queue would need one blocked connection
// per slot in every worker instead.
const keyPrefix = "invalidator:{wake}:"

// Key is the wake list of a queue.
func Key(queue string) string { return keyPrefix + queue }

// queueOf returns the queue of a wake list key.
func queueOf(key string) (string, bool) {
	if len(key) <= len(keyPrefix) || key[:len(keyPrefix)] != keyPrefix {
		return "", false
	}
	return key[len(keyPrefix):], true
}

// MaxTokens caps a wake list. A worker process needs one token to wake: it
// then takes tasks without waiting until its queues are empty again. So the
// cap only needs to exceed the idle workers a burst should wake; tokens left
// after their tasks were taken each cost one idle worker one extra dequeue
// round, so the cap also bounds that waste after a burst.
const MaxTokens = 256

// tokenTTL expires a wake list nobody pops (no waking worker serves the
// queue): a token older than this wakes nobody usefully.
const tokenTTL = 10 * time.Minute

// pushTimeout bounds one background push; a failed push only delays the
// task to the workers' safety poll.
const pushTimeout = 2 * time.Second

// busyHold is how long a Pusher holds its next push after one that found
// a wake list already full. A full list means nobody popped its tokens
// since they were pushed: every worker serving the queue is busy, and a
// busy worker dequeues without waiting for a token. Under a steady flow
// nearly every push finds its list full, and without the hold the pushes
// cost the queue Redis and the producer a round trip every couple of
// tasks (about one in five of the enqueue path's round trips). The
// wake-ups gathered meanwhile are pushed when the hold ends, never
// dropped, so a worker that goes idle during it, and has already popped
// the 256 tokens, waits at most this long for its next one.
const busyHold = time.Millisecond

// Push adds tokens to the wake lists: counts maps a queue to the tasks just
// made ready in it. It is one pipeline of an LPUSH of up to MaxTokens
// tokens, an LTRIM to MaxTokens and an EXPIRE per queue.
func Push(ctx context.Context, rdb redis.UniversalClient, counts map[string]int) error {
	_, err := push(ctx, rdb, counts, func(string) bool { return true })
	return err
}

// push is Push, with an EXPIRE only for the queues expire picks. full
// reports that some list already held MaxTokens tokens before the push.
func push(ctx context.Context, rdb redis.UniversalClient, counts map[string]int, expire func(queue string) bool) (full bool, err error) {
	if len(counts) == 0 {
		return false, nil
	}
	queues := slices.Sorted(maps.Keys(counts))
	lens := make(map[string]*redis.IntCmd, len(queues))
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, q := range queues {
			n := min(counts[q], MaxTokens)
			if n <= 0 {
				continue
			}
			tokens := make([]any, n)
			for i := range tokens {
				tokens[i] = "1"
			}
			lens[q] = p.LPush(ctx, Key(q), tokens...)
			// In the same round trip: under a steady flow into busy
			// workers nearly every push finds the list full, and a
			// trim of a short list costs Redis next to nothing.
			p.LTrim(ctx, Key(q), 0, MaxTokens-1)
			if expire(q) {
				p.Expire(ctx, Key(q), tokenTTL)
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("push wake-up tokens: %w", err)
	}
	for _, q := range queues {
		// LPUSH replies with the length before any blocked BLPOP is
		// served: a list that held MaxTokens before it had no waiter.
		if c := lens[q]; c != nil && c.Val()-int64(min(counts[q], MaxTokens)) >= MaxTokens {
			full = true
		}
	}
	return full, nil
}

// Pusher pushes wake-up tokens in the background, so a producer's call
// returns as soon as its task is enqueued. It holds no goroutine while
// idle: Wake starts one, which pushes everything gathered so far in one
// pipeline, then what gathered meanwhile, and ends when nothing is left.
// After a push that found a list full (busy workers) it waits busyHold
// before the next one.
// A nil *Pusher does nothing. It is safe for concurrent use.
type Pusher struct {
	rdb redis.UniversalClient
	log *slog.Logger

	mu      sync.Mutex     // guards pending, running and waiters
	idle    *sync.Cond     // on mu; broadcast when running turns false
	pending map[string]int // queue -> tokens not yet pushed
	running bool           // a flush goroutine is running
	waiters int            // callers in Wait: no hold while there are any

	// hold is busyHold but in tests; hurry ends a hold early (Wait).
	hold  time.Duration
	hurry chan struct{}

	// expired is when each queue's list last got its EXPIRE; only the
	// flush goroutine (one at a time) uses it.
	expired map[string]time.Time

	failures atomic.Int64
}

// NewPusher returns a Pusher on the queue Redis rdb. log receives failed
// pushes at debug level; nil discards them.
func NewPusher(rdb redis.UniversalClient, log *slog.Logger) *Pusher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pusher{rdb: rdb, log: log, pending: make(map[string]int), expired: make(map[string]time.Time),
		hold: busyHold, hurry: make(chan struct{}, 1)}
	p.idle = sync.NewCond(&p.mu)
	return p
}

// Wake asks for n tokens on queue's wake list: n tasks were just made
// ready there. It does not wait for Redis.
func (p *Pusher) Wake(queue string, n int) {
	if p == nil || n <= 0 {
		return
	}
	p.mu.Lock()
	p.pending[queue] += n
	start := !p.running
	p.running = true
	p.mu.Unlock()
	if start {
		go p.flush()
	}
}

func (p *Pusher) flush() {
	for {
		p.mu.Lock()
		if len(p.pending) == 0 {
			p.running = false
			p.idle.Broadcast()
			p.mu.Unlock()
			return
		}
		batch := p.pending
		p.pending = make(map[string]int, len(batch))
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), pushTimeout)
		// The TTL only clears lists nobody pops: refreshing it once every
		// tenth of it is enough, and saves a command per push.
		now := time.Now()
		expire := func(q string) bool {
			if now.Sub(p.expired[q]) < tokenTTL/10 {
				return false
			}
			p.expired[q] = now
			return true
		}
		full, err := push(ctx, p.rdb, batch, expire)
		cancel()
		if err != nil {
			// Not an error for the caller: the task is enqueued, and the
			// workers' safety poll finds it.
			p.failures.Add(1)
			p.log.Debug("wake-up push failed; the task waits for the workers' safety poll", "err", err.Error())
		}
		if full {
			p.holdOn()
		}
	}
}

// holdOn waits busyHold, or less if a caller is in Wait, while the
// wake-ups of further enqueues gather in pending for one push.
func (p *Pusher) holdOn() {
	p.mu.Lock()
	waiting := p.waiters > 0
	p.mu.Unlock()
	if waiting {
		return
	}
	t := time.NewTimer(p.hold)
	defer t.Stop()
	select {
	case <-t.C:
	case <-p.hurry:
	}
}

// Wait returns when every token asked for so far has been pushed (or its
// push failed). Call it before closing the Redis client.
func (p *Pusher) Wait() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.waiters++
	select { // end a hold in progress
	case p.hurry <- struct{}{}:
	default:
	}
	for p.running {
		p.idle.Wait()
	}
	p.waiters--
	p.mu.Unlock()
}

// Failures is the number of failed background pushes so far.
func (p *Pusher) Failures() int64 {
	if p == nil {
		return 0
	}
	return p.failures.Load()
}
