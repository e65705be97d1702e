package keyspec

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/slot"
)

// The shard names are the queue layout: producers and workers compute them
// apart, and queued tasks wait under them. A change here strands tasks, so
// these names must never change.
func TestShardQueueNamesAreStable(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"invalidator-critical"}, ShardQueues("invalidator-critical", 1))
	require.Equal(t, []string{"invalidator-critical.0.3", "invalidator-critical.1.2"}, ShardQueues("invalidator-critical", 2))
	require.Equal(t, []string{"invalidator-critical.0.13", "invalidator-critical.1.11", "invalidator-critical.2.12"},
		ShardQueues("invalidator-critical", 3))
}

// Each of n shards hashes into the middle half of its own n-th of the slots,
// so with n shards on n masters of equal slot ranges every master has one.
func TestShardQueuesSpreadOverTheSlots(t *testing.T) {
	t.Parallel()
	for _, q := range []string{"invalidator-critical", "q", "invalidator-bench", "a.b:c"} {
		for n := 2; n <= MaxShards; n++ {
			names := ShardQueues(q, n)
			require.Len(t, names, n)
			for i, name := range names {
				// |slot - (i+1/2)·Count/n| <= Count/(4n), times 4n.
				d := 4*n*slot.Of(name) - 2*(2*i+1)*slot.Count
				require.LessOrEqual(t, max(d, -d), slot.Count, "shard %d of %d of %q: %s has slot %d", i, n, q, name, slot.Of(name))
				require.True(t, strings.HasPrefix(name, fmt.Sprintf("%s.%d.", q, i)), name)
			}
		}
	}
	// redis-cli's 3 masters: 0-5460, 5461-10922, 10923-16383.
	masters := map[int]bool{}
	for _, name := range ShardQueues("invalidator-critical", 3) {
		masters[slot.Of(name)/5461] = true
	}
	require.Len(t, masters, 3)
}

func TestClassQueueFor(t *testing.T) {
	t.Parallel()
	c := NewClass("critical")
	require.Equal(t, "invalidator-critical", c.QueueFor("user:{42}:profile"))
	c.Shards = 3
	shards := c.Queues()
	seen := map[string]bool{}
	for i := range 300 {
		q := c.QueueFor(fmt.Sprintf("k:%d", i))
		require.Contains(t, shards, q)
		seen[q] = true
	}
	require.Len(t, seen, 3, "300 keys reach every shard")
	// One entity's keys share a hash tag, so a shard.
	require.Equal(t, c.QueueFor("user:{42}:profile"), c.QueueFor("user:{42}:settings"))
	require.Equal(t, shards[slot.Of("k:7")%3], c.QueueFor("k:7"))
}

func TestShardsInPolicy(t *testing.T) {
	t.Parallel()
	p, err := Parse("policy.yaml", []byte(`version: 1
default_class: critical
classes:
  critical: {weight: 6, shards: 4}
  standard: {weight: 3}
  bulk: {weight: 1, shards: 2}
`))
	require.NoError(t, err)
	crit := p.Classes["critical"]
	require.Equal(t, 4, crit.Shards)
	require.Equal(t, 1, p.Classes["standard"].Shards)
	w := p.QueueWeights()
	// L = lcm(4, 2) = 4: critical 6*4/4 per shard, standard 3*4, bulk 1*4/2.
	for _, q := range crit.Queues() {
		require.Equal(t, 6, w[q], q)
	}
	for _, q := range p.Classes["bulk"].Queues() {
		require.Equal(t, 2, w[q], q)
	}
	require.Equal(t, 12, w["invalidator-standard"])
	// The unsharded queues of sharded classes are kept, at weight 1.
	require.Equal(t, 1, w["invalidator-critical"])
	require.Equal(t, 1, w["invalidator-bulk"])
	require.Len(t, w, 4+1+2+2)
	require.Len(t, p.Queues(), 9)
	// Proportions between classes are those of their weights.
	sum := func(c *Class) int {
		n := 0
		for _, q := range c.Queues() {
			n += w[q]
		}
		return n
	}
	require.Equal(t, 2*sum(p.Classes["standard"]), sum(crit))
	require.Equal(t, 3*sum(p.Classes["bulk"]), sum(p.Classes["standard"]))

	// A queue override naming a sharded class resolves to its shard.
	require.Equal(t, crit.QueueFor("k"), p.QueueFor("invalidator-critical", "k"))
	require.Equal(t, "invalidator-standard", p.QueueFor("invalidator-standard", "k"))
	require.Equal(t, crit.Queues()[1], p.QueueFor(crit.Queues()[1], "k"))
}

func TestShardsRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ src, want string }{
		{"classes:\n  a: {shards: 0}\n", "shards 0 is out of range"},
		{"classes:\n  a: {shards: 65}\n", "shards 65 is out of range"},
		{"default_class: a\nclasses:\n  a: {shards: 2, queue: q}\n  b: {queue: q}\n", `share queue "q" with different shards`},
		{"default_class: a\nclasses:\n  a: {shards: 2, queue: q}\n  b: {queue: " + ShardQueues("q", 2)[0] + "}\n", `is the queue of class "b"`},
		{"default_class: a\nclasses:\n  a: {shards: 61, weight: 1000}\n  b: {shards: 59}\n  c: {shards: 64}\n", "add up to queue weights"},
	} {
		verrs := parseErrors(t, "version: 1\n"+tc.src)
		require.Contains(t, verrs.Error(), tc.want, tc.src)
	}
}

// IsShardQueue recognises exactly the names ShardQueues gives, for any
// shard count, so a worker serves old shard queues and nothing else.
func TestIsShardQueue(t *testing.T) {
	t.Parallel()
	for _, q := range []string{"invalidator-critical", "a.b:c"} {
		valid := map[string]bool{}
		for n := 2; n <= MaxShards; n++ {
			for _, name := range ShardQueues(q, n) {
				valid[name] = true
				require.True(t, IsShardQueue(q, name), name)
				require.False(t, IsShardQueue(q+"x", name), name)
			}
		}
		require.False(t, IsShardQueue(q, q))
		// A name of the right shape whose salt no shard count picks.
		found := false
		for salt := 0; salt < 10000 && !found; salt++ {
			name := fmt.Sprintf("%s.0.%d", q, salt)
			if !valid[name] {
				require.False(t, IsShardQueue(q, name), name)
				found = true
			}
		}
		require.True(t, found)
		for name := range valid {
			i := strings.LastIndexByte(name, '.')
			require.False(t, IsShardQueue(q, name[:i]+".0"+name[i+1:]), "leading zero")
			require.False(t, IsShardQueue(q, name+"x"))
			break
		}
		for _, bad := range []string{q + ".", q + "..", q + ".0", q + ".x.1", q + ".-1.1", q + ".0.-1", q + ".0.1.2"} {
			require.False(t, IsShardQueue(q, bad), bad)
		}
	}
}

// IsShardQueue reads queue names from Redis; whatever it accepts must be a
// name ShardQueues gives.
func FuzzIsShardQueue(f *testing.F) {
	f.Add("q", "q.0.1")
	f.Add("invalidator-critical", "invalidator-critical.1.11")
	f.Add("a.b", "a.b.0.00")
	f.Fuzz(func(t *testing.T, q, name string) {
		if !IsShardQueue(q, name) {
			return
		}
		for n := 2; n <= MaxShards; n++ {
			if slices.Contains(ShardQueues(q, n), name) {
				return
			}
		}
		t.Fatalf("IsShardQueue(%q, %q) but no shard count names it", q, name)
	})
}
