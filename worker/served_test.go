package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// QueueServed reads the fleet's heartbeat records by Redis TIME: a lapsed
// record serves nothing, a live one serves its queues, and one that does
// not decode (a newer build's) might serve any queue.
func TestQueueServed_ReadsLiveHeartbeats(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	ctx := context.Background()
	served := func(queue string) bool {
		ok, err := QueueServed(ctx, db.Client, queue)
		require.NoError(t, err)
		return ok
	}
	require.False(t, served("q1"), "nothing runs")

	forgeRecord(t, db.Client, "dead", "q1", -time.Second)
	require.False(t, served("q1"), "a lapsed record serves nothing")

	forgeRecord(t, db.Client, "live", "q2", time.Minute)
	require.True(t, served("q2"))
	require.False(t, served("q1"), "a live record serves its own queues only")

	now, err := db.Client.Time(ctx).Result()
	require.NoError(t, err)
	require.NoError(t, db.Client.HSet(ctx, fleetWorkersKey, "newer", fmt.Sprintf("%d 1 not-json", now.Add(time.Minute).UnixMilli())).Err())
	require.True(t, served("q1"), "a live record that does not decode may serve any queue")
}

// Without heartbeats, asynq's own server registry answers.
func TestQueueServed_ReadsAsynqServers(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	z := startZombie(t, db.Client, "q3", 1)
	require.Eventually(t, func() bool {
		ok, err := QueueServed(context.Background(), db.Client, "q3")
		return err == nil && ok
	}, 10*time.Second, 5*time.Millisecond)
	ok, err := QueueServed(context.Background(), db.Client, "q4")
	require.NoError(t, err)
	require.False(t, ok)

	z.stop()
	ok, err = QueueServed(context.Background(), db.Client, "q3")
	require.NoError(t, err)
	require.False(t, ok, "a server that shut down serves nothing")
}

// The cost while a worker serves the queue: one script call.
func BenchmarkQueueServed(b *testing.B) {
	db := redistest.NewDB(b)
	now, err := db.Client.Time(context.Background()).Result()
	require.NoError(b, err)
	for i := range 10 {
		v := fmt.Sprintf(`%d 1 {"host":"h","pid":%d,"queues":["a","b","invalidator-standard"],"timeout_ms":2000}`, now.Add(time.Hour).UnixMilli(), i)
		require.NoError(b, db.Client.HSet(context.Background(), fleetWorkersKey, fmt.Sprint("w", i), v).Err())
	}
	for b.Loop() {
		ok, err := QueueServed(context.Background(), db.Client, "invalidator-standard")
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
