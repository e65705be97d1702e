package enqueue

import (
	"time"

	"github.com/invalidator/invalidator/tasks"
)

// Merge coalesces the key deletes among msgs, as a coalescing Client does
// for concurrent calls: those with the same queue, retries, timeout and
// cache target become as few Messages as the task limits allow (see
// tasks.SplitKeys), each stamped with the earliest EnqueuedAt of the keys
// it holds, so lag is never under-reported. A key repeated within such a
// group is kept once: deleting it once deletes it for every write.
//
// Other kinds pass through unchanged, as do key deletes with Headers,
// ProcessAt or ID set, and so does a key delete whose payload this build
// cannot decode (a newer format, or poison): it still reaches a worker,
// which runs it or archives it with a reason, instead of being dropped
// here. The merged Messages come first, in the order of their
// groups' first Message, then the others in their order.
func Merge(msgs []Message) []Message {
	type group struct {
		m    Message // the first Message's options; Payload unused
		tgt  string
		at   time.Time
		keys []string
		seen map[string]struct{}
	}
	type groupKey struct {
		queue    string
		maxRetry int
		timeout  time.Duration
		target   string
	}
	var (
		groups []*group
		byKey  = map[groupKey]*group{}
		rest   []Message
	)
	for _, m := range msgs {
		// Headers, a schedule or an ID make a task apart (a second
		// delete, a dead-letter retry); a Builder's Messages have none.
		if m.Kind != tasks.KindDeleteKeys || len(m.Headers) > 0 || !m.ProcessAt.IsZero() || m.ID != "" {
			rest = append(rest, m)
			continue
		}
		t, err := tasks.Unmarshal(m.Kind, m.Payload)
		if err != nil {
			rest = append(rest, m)
			continue
		}
		dk := t.(tasks.DeleteKeys)
		k := groupKey{m.Queue, m.MaxRetry, m.Timeout, dk.Target}
		g := byKey[k]
		if g == nil {
			g = &group{m: m, tgt: dk.Target, at: dk.EnqueuedAt, seen: map[string]struct{}{}}
			byKey[k] = g
			groups = append(groups, g)
		}
		if !dk.EnqueuedAt.IsZero() && (g.at.IsZero() || dk.EnqueuedAt.Before(g.at)) {
			g.at = dk.EnqueuedAt
		}
		for _, key := range dk.Keys {
			if _, dup := g.seen[key]; !dup {
				g.seen[key] = struct{}{}
				g.keys = append(g.keys, key)
			}
		}
	}
	out := make([]Message, 0, len(groups)+len(rest))
	for _, g := range groups {
		// Every key came out of a valid task, so splitting and encoding
		// cannot fail; were it to, the group's originals would be lost, so
		// fall back to them.
		chunks, err := tasks.SplitKeys(g.keys)
		merged := make([]Message, 0, len(chunks))
		for _, chunk := range chunks {
			if err != nil {
				break
			}
			var p []byte
			p, err = tasks.Marshal(tasks.DeleteKeys{Keys: chunk, Target: g.tgt, EnqueuedAt: g.at})
			m := g.m
			m.Payload = p
			merged = append(merged, m)
		}
		if err != nil {
			return msgs
		}
		out = append(out, merged...)
	}
	return append(out, rest...)
}
