package keyspec

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/invalidator/invalidator/internal/slot"
)

// MaxShards bounds Class.Shards. A shard is an asynq queue that every worker
// polls, so more shards than masters buys nothing but polls.
const MaxShards = 64

// Shard queue names. Every asynq key of a queue carries the queue name as
// its hash tag ("asynq:{<queue>}:pending"), so a queue lives on the one
// cluster master that serves the name's hash slot, and so does invalidator's
// own per-queue state (the dead-letter record "invalidator:dead:{<queue>}").
// A sharded class therefore needs queue names whose slots fall far apart.
//
// Shard i of n of queue q is named "q.<i>.<salt>", where salt is the
// smallest integer from 0 up whose name hashes into the middle half of the
// i-th of n equal slices of the 16384 slots, that is within a quarter slice
// of the slice's centre. A cluster whose masters split the slots into equal
// ranges (what redis-cli --cluster create does) then has each shard well
// inside one master's range, and n shards on m masters spread as evenly as
// n/m allows: with n = m, one shard on each master, even if the ranges are
// off by up to a quarter of a range.
//
// The names are part of the queue layout: producers and workers compute
// them independently, and tasks queued under a name stay there. They must
// never change; TestShardQueueNamesAreStable pins them.

// ShardQueues returns the n shard queue names of queue (see above), in
// shard order; for n <= 1 just queue.
func ShardQueues(queue string, n int) []string {
	if n <= 1 {
		return []string{queue}
	}
	names := make([]string, n)
	for i := range n {
		names[i] = shardQueue(queue, i, n)
	}
	return names
}

// shardQueue is the name of shard i of n of queue.
func shardQueue(queue string, i, n int) string {
	// Centre and tolerance in units of 1/(4n) slots, to stay in integers:
	// the centre of slice i is (2i+1)·Count/(2n), the tolerance Count/(4n).
	centre4n := int64(2*(2*i+1)) * slot.Count
	tol4n := int64(slot.Count)
	for salt := 0; ; salt++ {
		name := queue + "." + strconv.Itoa(i) + "." + strconv.Itoa(salt)
		s4n := int64(slot.Of(name)) * int64(4*n)
		if d := s4n - centre4n; d >= -tol4n && d <= tol4n {
			return name
		}
	}
}

// Queues returns the queues of the class's tasks: its Queue, or its shard
// queues when Shards > 1.
func (c *Class) Queues() []string { return slices.Clone(c.shardNames()) }

// shardNames returns the shard queue names, from the names a policy file's
// decoder stored (see shardCache) when they are still those of Queue and
// Shards, else computed: finding a name takes a few CRCs per try, too many
// to pay on every enqueue.
func (c *Class) shardNames() []string {
	if c.Shards <= 1 {
		return []string{c.Queue}
	}
	if c.shards.queue == c.Queue && len(c.shards.names) == c.Shards {
		return c.shards.names
	}
	return ShardQueues(c.Queue, c.Shards)
}

// shardCache holds a class's shard queue names, computed once when its
// policy is decoded and read-only after: a validated Policy is shared by
// goroutines.
type shardCache struct {
	queue string   // the Queue the names belong to
	names []string // ShardQueues(queue, Shards)
}

// cacheShards stores each class's shard names; the decoder calls it once,
// before the policy is returned.
func cacheShards(p *Policy) {
	for _, c := range p.Classes {
		if c.Shards > 1 { // one queue needs no search
			c.shards = shardCache{queue: c.Queue, names: ShardQueues(c.Queue, c.Shards)}
		}
	}
}

// QueueFor returns the queue of a task of the class whose shard key is
// shardKey: Queue, or for a sharded class the shard that the hash slot of
// shardKey picks (slot mod Shards). The slot honours hash tags, so keys that
// share a cluster slot, such as one entity's "user:{42}:..." keys, share a
// shard, and one entity's tasks stay in one queue, in order.
func (c *Class) QueueFor(shardKey string) string {
	if c.Shards <= 1 {
		return c.Queue
	}
	return c.shardNames()[slot.Of(shardKey)%c.Shards]
}

// QueueFor returns the queue a task with shardKey goes to when it is sent to
// queue: if queue is the Queue of a sharded class, that class's shard for
// shardKey (see Class.QueueFor), else queue itself. This is what a queue
// override (enqueue.Queue) resolves through.
func (p *Policy) QueueFor(queue, shardKey string) string {
	if c := p.ShardedClass(queue); c != nil {
		return c.QueueFor(shardKey)
	}
	return queue
}

// ShardedClass returns a sharded class whose Queue is queue, or nil. A
// producer asks it before it computes a task's shard key, which costs
// allocations for bumps and events, so unsharded queues pay nothing.
func (p *Policy) ShardedClass(queue string) *Class {
	// Classes sharing a queue have the same shards (checkShards), so any
	// of them answers.
	for _, c := range p.Classes {
		if c.Queue == queue && c.Shards > 1 {
			return c
		}
	}
	return nil
}

// shardWeights spreads each class's weight over its queues: a class of
// weight w with n shards gives each shard w·L/n, where L is the least
// common multiple of the classes' shard counts, and an unsharded class
// gets w·L. So the proportions between classes stay exactly those of their
// weights (asynq's weights are integers). A sharded class's own Queue is
// also served, with weight 1: tasks enqueued before the class was sharded
// (or by an older producer) still run. Queues shared by classes take the
// highest weight.
func (p *Policy) shardWeights() map[string]int {
	l := 1
	for _, c := range p.Classes {
		if c.Shards > 1 {
			// Saturated, so many coprime shard counts cannot overflow; a
			// validated policy never gets near (see checkShards).
			l = min(lcm(l, c.Shards), maxWeightSum+1)
		}
	}
	w := make(map[string]int, len(p.Classes))
	for _, name := range p.ClassNames() {
		c := p.Classes[name]
		weight := max(c.Weight, 1)
		if c.Shards <= 1 {
			w[c.Queue] = max(w[c.Queue], weight*l)
			continue
		}
		w[c.Queue] = max(w[c.Queue], 1)
		for _, q := range c.Queues() {
			w[q] = max(w[q], weight*l/c.Shards)
		}
	}
	return w
}

// maxWeightSum bounds the sum of the queue weights a policy gives a worker:
// asynq lists each queue once per unit of weight on every poll.
const maxWeightSum = 100000

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func lcm(a, b int) int { return a / gcd(a, b) * b }

// checkShards reports problems of the classes' shards: classes that share a
// queue with different shard counts, a shard name that is another class's
// queue, and weights too fine for asynq.
func checkShards(p *Policy) []string {
	var msgs []string
	byQueue := map[string]*Class{}
	for _, name := range p.ClassNames() {
		c := p.Classes[name]
		if o, ok := byQueue[c.Queue]; ok && o.Shards != c.Shards {
			msgs = append(msgs, fmt.Sprintf("classes %q and %q share queue %q with different shards (%d and %d); give them the same shards or separate queues",
				o.Name, c.Name, c.Queue, max(o.Shards, 1), max(c.Shards, 1)))
		}
		byQueue[c.Queue] = c
	}
	for _, name := range p.ClassNames() {
		c := p.Classes[name]
		if c.Shards <= 1 {
			continue
		}
		for _, q := range c.Queues() {
			if o, ok := byQueue[q]; ok {
				msgs = append(msgs, fmt.Sprintf("shard queue %q of class %q is the queue of class %q; rename that queue", q, c.Name, o.Name))
			}
		}
	}
	sum := 0
	for _, w := range p.shardWeights() {
		sum += w
	}
	if sum > maxWeightSum {
		counts := []int{}
		for _, c := range p.Classes {
			counts = append(counts, max(c.Shards, 1))
		}
		slices.Sort(counts)
		msgs = append(msgs, fmt.Sprintf("the classes' weights and shards (%v) add up to queue weights of %d, above %d; use shard counts that divide one another (1, 2, 4, 8...) or lower weights",
			slices.Compact(counts), sum, maxWeightSum))
	}
	return msgs
}

// IsShardQueue reports whether name is a shard queue of queue for some shard
// count from 2 to MaxShards, that is "queue.<i>.<salt>" with the salt
// ShardQueues picks. A worker uses it to find retired shard queues, those of
// a class's earlier shard count, whose tasks must still run; checking the
// salt keeps it from serving a queue that only looks like a shard.
func IsShardQueue(queue, name string) bool {
	rest, ok := strings.CutPrefix(name, queue+".")
	if !ok {
		return false
	}
	is, salt, ok := strings.Cut(rest, ".")
	if !ok {
		return false
	}
	i, err := strconv.Atoi(is)
	if err != nil || i < 0 || i >= MaxShards || strconv.Itoa(i) != is {
		return false
	}
	if s, err := strconv.Atoi(salt); err != nil || s < 0 || strconv.Itoa(s) != salt {
		return false
	}
	for n := max(i+1, 2); n <= MaxShards; n++ {
		if shardQueue(queue, i, n) == name {
			return true
		}
	}
	return false
}
