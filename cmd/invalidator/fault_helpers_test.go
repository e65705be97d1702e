package main

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// existing reports how many of keys exist, with one EXISTS per key in a
// pipeline (a multi-key EXISTS would cross the slots of a cluster).
func existing(t *testing.T, rdb redis.UniversalClient, keys ...string) int {
	t.Helper()
	ctx := context.Background()
	pipe := rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Exists(ctx, k)
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)
	n := 0
	for _, c := range cmds {
		n += int(c.Val())
	}
	return n
}

// requireDrained waits until the queues hold no pending, active, scheduled
// or retrying task.
func requireDrained(t *testing.T, insp *asynq.Inspector, queues ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, q := range queues {
		for {
			info, err := insp.GetQueueInfo(q)
			if err == nil && info.Pending+info.Active+info.Scheduled+info.Retry == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("queue %s not drained: %+v (%v)", q, info, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
