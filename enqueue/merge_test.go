package enqueue_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

func TestMerge(t *testing.T) {
	t.Parallel()
	policy, err := keyspec.Parse("p.yaml", []byte(policyYAML))
	require.NoError(t, err)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := t0
	b := enqueue.NewBuilder(enqueue.Config{Policy: policy, Now: func() time.Time { return at }})
	keys := func(b *enqueue.Builder, ks ...string) enqueue.Message {
		ms, err := b.DeleteKeys(ks...)
		require.NoError(t, err)
		return ms[0]
	}
	var in []enqueue.Message
	at = t0.Add(2 * time.Second)
	in = append(in, keys(b, "a", "b"))
	at = t0.Add(time.Second) // earlier, later in the list
	in = append(in, keys(b, "b", "c\xff"))
	fam, err := b.DeleteFamily("price", map[string]string{"sku": "1"})
	require.NoError(t, err)
	in = append(in, fam)
	in = append(in, keys(b.With(enqueue.Queue("prices")), "a")) // other options: another group
	other := enqueue.NewBuilder(enqueue.Config{Policy: policy, Target: "sessions", Now: func() time.Time { return at }})
	in = append(in, keys(other, "a")) // other target: another group
	poison := in[0]
	poison.Payload = []byte("not a payload")
	in = append(in, poison)

	out := enqueue.Merge(in)
	require.Len(t, out, 5)
	decode := func(m enqueue.Message) tasks.DeleteKeys {
		got, err := tasks.Unmarshal(m.Kind, m.Payload)
		require.NoError(t, err)
		return got.(tasks.DeleteKeys)
	}
	require.Equal(t, tasks.DeleteKeys{Keys: []string{"a", "b", "c\xff"}, EnqueuedAt: t0.Add(time.Second)}, decode(out[0]),
		"one task, duplicates once, the earliest time")
	require.Equal(t, "invalidator-standard", out[0].Queue)
	require.Equal(t, "prices", out[1].Queue)
	require.Equal(t, "sessions", decode(out[2]).Target)
	require.Equal(t, fam, out[3], "other kinds pass through")
	require.Equal(t, poison, out[4], "an undecodable payload passes through, for the worker to archive")
}

// Merged keys respect the task limits.
func TestMergeSplits(t *testing.T) {
	t.Parallel()
	b := enqueue.NewBuilder(enqueue.Config{})
	var in []enqueue.Message
	for i := range 2*tasks.MaxKeysPerTask + 1 {
		ms, err := b.DeleteKeys(fmt.Sprintf("k%d", i))
		require.NoError(t, err)
		in = append(in, ms...)
	}
	out := enqueue.Merge(in)
	require.Len(t, out, 3)
	n := 0
	for _, m := range out {
		got, err := tasks.Unmarshal(m.Kind, m.Payload)
		require.NoError(t, err)
		n += len(got.(tasks.DeleteKeys).Keys)
	}
	require.Equal(t, len(in), n)
}

// A Message with headers, a schedule or an ID of its own is a task apart
// (a second delete, a dead-letter retry): merging it would lose them.
func TestMergeKeepsTasksApart(t *testing.T) {
	t.Parallel()
	b := enqueue.NewBuilder(enqueue.Config{})
	ms, err := b.DeleteKeys("a")
	require.NoError(t, err)
	plain := ms[0]
	second, scheduled, withID := plain, plain, plain
	second.Headers = map[string]string{tasks.HeaderSecond: "1"}
	scheduled.ProcessAt = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	withID.ID = "t-1"
	out := enqueue.Merge([]enqueue.Message{plain, second, plain, scheduled, withID})
	require.Equal(t, []enqueue.Message{plain, second, scheduled, withID}, out)
}
