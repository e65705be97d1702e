package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/internal/slot"
)

// errBatchFailed stands in for a command error when a pipeline reports a
// failure that no single command carries, so that no task is told its keys
// are gone when that is not known.
var errBatchFailed = errors.New("pipeline failed without a command error; the keys may still exist")

// batcher merges the keys of concurrently running DeleteKeys tasks for one
// cache target into pipelined multi-key UNLINKs.
//
// A batch never waits for more keys. A submit that finds a free in-flight
// slot hands its keys to a sender at once, so at low load a task's keys go
// out immediately. While every slot is busy, submits queue up; a sender that
// finishes its batch takes everything waiting (up to maxKeys) as its next
// batch. Batches thus grow with the load. A sender with nothing left to send
// stays parked for senderLinger, for the next submit, then ends: an idle
// batcher holds no goroutine and needs no Close.
//
// Each submit returns when the commands that carried its own keys have
// succeeded, or with the error of one that failed; the other tasks of the
// batch are unaffected.
type batcher struct {
	client   redis.UniversalClient
	cluster  bool     // group by hash slot: no multi-key command may cross slots
	maxKeys  int      // keys taken into one batch, unless one request alone is larger
	chunk    int      // keys in one UNLINK
	inFlight int      // batches sent at once
	target   string   // the cache target's name, for metrics
	metrics  *Metrics // nil: none

	mu      sync.Mutex // guards pending, senders and parked
	pending []*deleteRequest
	senders int                     // sender goroutines, sending or parked; at most inFlight
	parked  []chan []*deleteRequest // senders waiting for a batch, the latest last
}

// senderLinger is how long a sender with nothing to send waits for the next
// submit before it ends. A fresh goroutine per batch grew its stack through
// go-redis's pipeline at every task (about a twentieth of the worker's CPU
// at full load); a parked one is woken by a channel send instead. Under load
// tasks come well within this; an idle worker's senders end after it.
const senderLinger = 10 * time.Millisecond

// deleteRequest is one task's keys, waiting to be sent or in flight.
type deleteRequest struct {
	ctx  context.Context // only its deadline is used: it bounds the batch
	keys []string
	done chan error // buffered: a sender never blocks on a task that left
}

func newBatcher(c redis.UniversalClient, maxKeys, chunk, inFlight int) *batcher {
	return &batcher{
		client:   c,
		cluster:  mayBeCluster(c),
		maxKeys:  maxKeys,
		chunk:    chunk,
		inFlight: inFlight,
	}
}

// unlink deletes keys together with those of other concurrent callers and
// returns once its own keys are gone, or with the error of a command that
// carried some of them. A cancelled ctx returns ctx.Err() at once; its keys
// may still be sent, which is harmless.
func (b *batcher) unlink(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &deleteRequest{ctx: ctx, keys: keys, done: make(chan error, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, r)
	var batch []*deleteRequest
	var parked chan []*deleteRequest
	switch {
	case len(b.parked) > 0:
		parked = b.parked[len(b.parked)-1]
		b.parked = b.parked[:len(b.parked)-1]
		batch = b.takeLocked()
	case b.senders < b.inFlight:
		b.senders++
		batch = b.takeLocked()
	}
	b.mu.Unlock()
	// A sender of its own, never this goroutine, so that this task can
	// still leave on cancellation while its batch is on the wire.
	switch {
	case parked != nil:
		parked <- batch // buffered: never blocks
	case batch != nil:
		go b.send(batch)
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// takeLocked removes the next batch from pending: requests in arrival order
// up to maxKeys keys, and at least one request. b.mu must be held.
func (b *batcher) takeLocked() []*deleteRequest {
	n, keys := 0, 0
	for n < len(b.pending) && (n == 0 || keys+len(b.pending[n].keys) <= b.maxKeys) {
		keys += len(b.pending[n].keys)
		n++
	}
	batch := slices.Clone(b.pending[:n])
	clear(b.pending[:n]) // let the sent requests be collected
	b.pending = b.pending[n:]
	if len(b.pending) == 0 {
		b.pending = nil // drop the grown backing array once the burst is over
	}
	return batch
}

// send flushes batch, then keeps its in-flight slot for whatever queued up
// meanwhile, then parks for senderLinger, and gives the slot back once
// nothing came.
func (b *batcher) send(batch []*deleteRequest) {
	next := make(chan []*deleteRequest, 1)
	var linger *time.Timer
	for {
		b.flush(batch)
		b.mu.Lock()
		if len(b.pending) > 0 {
			batch = b.takeLocked()
			b.mu.Unlock()
			continue
		}
		b.parked = append(b.parked, next)
		b.mu.Unlock()
		if linger == nil {
			linger = time.NewTimer(senderLinger)
		} else {
			linger.Reset(senderLinger)
		}
		select {
		case batch = <-next:
			linger.Stop()
			continue
		case <-linger.C:
		}
		b.mu.Lock()
		if i := slices.Index(b.parked, next); i >= 0 {
			b.parked = slices.Delete(b.parked, i, i+1)
			b.senders--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		batch = <-next // a submit took this sender as its linger ended
	}
}

// flush sends one batch as a single pipeline and answers each request with
// the first error among the commands that carried its keys.
func (b *batcher) flush(batch []*deleteRequest) {
	cmds, owners := b.commands(batch)
	ctx, cancel := batchContext(batch)
	defer cancel()
	pipe := b.client.Pipeline()
	unlinks := make([]*redis.IntCmd, len(cmds))
	for i, keys := range cmds {
		unlinks[i] = pipe.Unlink(ctx, keys...)
	}
	_, execErr := pipe.Exec(ctx)
	b.observe(batch, unlinks)
	// A pipeline error with no command error cannot be pinned on a command:
	// every request of the batch fails rather than trust a success.
	unattributed := execErr != nil && !slices.ContainsFunc(unlinks, func(c *redis.IntCmd) bool { return c.Err() != nil })
	errs := make([]error, len(batch))
	for i, cmd := range unlinks {
		err := cmd.Err()
		if err == nil && unattributed {
			err = fmt.Errorf("%w: %w", errBatchFailed, execErr)
		}
		if err == nil {
			continue
		}
		for _, o := range owners[i] {
			if errs[o] == nil {
				errs[o] = fmt.Errorf("unlink: %w", err)
			}
		}
	}
	for i, r := range batch {
		r.done <- errs[i]
	}
}

// observe records the batch's size and the keys it removed.
func (b *batcher) observe(batch []*deleteRequest, unlinks []*redis.IntCmd) {
	if b.metrics == nil {
		return
	}
	keys := 0
	for _, r := range batch {
		keys += len(r.keys)
	}
	var removed int64
	for _, c := range unlinks {
		removed += c.Val()
	}
	b.metrics.batch(len(batch), keys)
	b.metrics.keysDeleted(b.target, removed)
}

// commands splits the keys of batch into UNLINK argument lists of at most
// chunk keys, within one hash slot on a cluster, and names for each list the
// requests (indexes into batch) whose keys it carries.
func (b *batcher) commands(batch []*deleteRequest) (cmds [][]string, owners [][]int) {
	return unlinkCommands(batch, b.cluster, b.chunk)
}

// unlinkCommands is batcher.commands for any caller: family scans use it
// too, so there is one place that keeps multi-key commands inside a slot.
func unlinkCommands(batch []*deleteRequest, cluster bool, chunk int) (cmds [][]string, owners [][]int) {
	type owned struct {
		key   string
		owner int
	}
	var groups [][]owned
	n := 0
	for _, r := range batch {
		n += len(r.keys)
	}
	all := make([]owned, 0, n)
	for i, r := range batch {
		for _, k := range r.keys {
			all = append(all, owned{k, i})
		}
	}
	if cluster {
		groups = slot.Group(all, func(o owned) string { return o.key })
	} else {
		groups = [][]owned{all}
	}
	for _, g := range groups {
		for lo := 0; lo < len(g); lo += chunk {
			part := g[lo:min(lo+chunk, len(g))]
			keys := make([]string, len(part))
			var who []int
			for j, e := range part {
				keys[j] = e.key
				// Owners arrive in ascending order within a group.
				if len(who) == 0 || who[len(who)-1] != e.owner {
					who = append(who, e.owner)
				}
			}
			cmds = append(cmds, keys)
			owners = append(owners, who)
		}
	}
	return cmds, owners
}

// batchContext bounds a batch by the latest deadline among its requests:
// past that, no task waits for the answer. It is never cancelled by a
// request leaving early, since the other requests still wait for it.
func batchContext(batch []*deleteRequest) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, r := range batch {
		d, ok := r.ctx.Deadline()
		if !ok {
			return context.Background(), func() {}
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.Background(), latest)
}
