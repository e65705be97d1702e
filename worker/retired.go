package worker

import (
	"fmt"
	"maps"
	"slices"

	"github.com/hibiken/asynq"

	"github.com/invalidator/invalidator/keyspec"
)

// Retired shard queues. A class's shard queue names depend on its shard
// count (keyspec.ShardQueues), so changing "shards" renames them, and the
// tasks already under the old names would otherwise never run: tasks queued
// by producers not yet restarted, outbox rows built earlier, retries and
// scheduled second deletes. asynq registers every queue a task was ever
// enqueued to (the set asynq:queues), so at start the worker also serves
// each registered queue that is a shard of a class's queue under another
// shard count, at weight 1, as a task of that class. Once such a queue is
// empty and no producer uses the old count, an operator deletes it (README,
// sharded classes) and it stops being served at the next start.

// retiredShardQueues returns the registered queues that are shards of one
// of p's class queues but not among the queues p serves, sorted.
func retiredShardQueues(insp *asynq.Inspector, p *keyspec.Policy) ([]string, error) {
	// asynq's Inspector takes no context; its calls are bounded by the
	// client's timeouts.
	registered, err := insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("list asynq queues for retired shard queues: %w", err)
	}
	current := p.QueueWeights()
	var retired []string
	for _, q := range registered {
		if _, ok := current[q]; ok {
			continue
		}
		if retiredClass(p, q) != nil {
			retired = append(retired, q)
		}
	}
	slices.Sort(retired)
	return retired, nil
}

// retiredClass returns the class whose queue q is a shard of (the first by
// name, as for current queues), or nil.
func retiredClass(p *keyspec.Policy, q string) *keyspec.Class {
	for _, name := range slices.Sorted(maps.Keys(p.Classes)) {
		if c := p.Classes[name]; keyspec.IsShardQueue(c.Queue, q) {
			return c
		}
	}
	return nil
}

// serveRetiredShards adds the retired shard queues registered now to the
// served queues, and logs them; Run calls it before the asynq server and the
// heartbeat read the queues.
func (w *Worker) serveRetiredShards() error {
	st := w.state.Load()
	retired, err := retiredShardQueues(asynq.NewInspectorFromRedisClient(w.cfg.Queue), st.policy)
	if err != nil {
		return err
	}
	if len(retired) == 0 {
		return nil
	}
	// A SetPolicy meanwhile keeps the served queues, so the retired ones
	// found for st's policy are those of the one that replaced it.
	for !w.state.CompareAndSwap(st, newPolicyState(st.policy, retired)) {
		st = w.state.Load()
	}
	w.log.Info("serving retired shard queues; delete each once it is empty (README, sharded classes)", "queues", retired)
	return nil
}
