package wake

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// Of the idle workers serving the same queues, one polls Redis per safety
// poll: the holder of the poll lock. Another worker's round after its
// safety poll is answered "empty" without a script call, and its wait goes
// on; a token still wakes it. When the holder stops, the next worker to
// time out polls. Before the poll lock every idle worker ran a dequeue
// script per queue per safety poll: at 64 workers and three queues, most
// of what an idle fleet cost the queue Redis.
func TestSafetyPollOnePerFleet(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	ctx := context.Background()
	mk := func(queues ...string) *Waiter {
		w, err := NewWaiter(WaiterConfig{Queues: queues})
		require.NoError(t, err)
		c, err := Dedicated(db.Client)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		w.Attach(c)
		return w
	}
	a, b := mk("q1", "q2"), mk("q2", "q1")
	dequeue := func(w *Waiter, q string) (string, error) {
		return dequeueScript.Run(ctx, w.rdb, dequeueKeys(q), time.Now().Add(30*time.Second).Unix(), taskKeyPrefix(q)).Text()
	}
	addTask := func(q, id string) {
		require.NoError(t, db.Client.HSet(ctx, taskKeyPrefix(q)+id, "msg", "msg-"+id).Err())
		require.NoError(t, db.Client.LPush(ctx, asynqKey(q, "pending"), id).Err())
	}

	a.pollTurn() // a's safety poll ended first: a polls
	b.pollTurn() // b's ended meanwhile: not its turn
	addTask("q1", "t1")
	_, err := dequeue(b, "q1")
	require.ErrorIs(t, err, redis.Nil, "b's round must not reach Redis: it is a's turn to poll")
	require.EqualValues(t, 1, b.Stats().PollSkipped)
	require.EqualValues(t, 1, db.Client.LLen(ctx, asynqKey("q1", "pending")).Val(), "b's skipped call dequeued the task")

	// b's round ends in a wait, which a token still ends at once.
	require.NoError(t, Push(ctx, db.Client, map[string]int{"q1": 1}))
	msg, err := dequeue(b, "q2")
	require.NoError(t, err)
	require.Equal(t, "msg-t1", msg)
	require.EqualValues(t, 2, b.Stats().PollSkipped)
	require.EqualValues(t, 1, b.Stats().Handed)

	// a's round is real, and a keeps its turn at its next safety poll.
	addTask("q2", "t2")
	msg, err = dequeue(a, "q2")
	require.NoError(t, err)
	require.Equal(t, "msg-t2", msg)
	require.Zero(t, a.Stats().PollSkipped)
	a.pollTurn()
	b.pollTurn()
	require.True(t, a.polling)
	require.True(t, b.skip)

	// a stops: b polls at its next safety poll.
	a.Stop()
	b.pollTurn()
	require.True(t, b.polling)
	require.False(t, b.skip)
}

// A safety poll that finds a task no token announced (a producer that
// pushes none) wakes the fleet for the rest of the queue: one token per
// task still pending, since the other idle workers would otherwise wait
// for their own turn to poll.
func TestSafetyPollWakesTheFleet(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	ctx := context.Background()
	w, err := NewWaiter(WaiterConfig{Queues: []string{"q"}, Pusher: NewPusher(db.Client, nil)})
	require.NoError(t, err)
	c, err := Dedicated(db.Client)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	w.Attach(c)
	for _, id := range []string{"t1", "t2", "t3"} {
		require.NoError(t, db.Client.HSet(ctx, taskKeyPrefix("q")+id, "msg", id).Err())
		require.NoError(t, db.Client.LPush(ctx, asynqKey("q", "pending"), id).Err())
	}
	w.pollTurn()
	require.True(t, w.polling)
	_, err = dequeueScript.Run(ctx, c, dequeueKeys("q"), time.Now().Add(30*time.Second).Unix(), taskKeyPrefix("q")).Text()
	require.NoError(t, err)
	require.Eventually(t, func() bool { return db.Client.LLen(ctx, Key("q")).Val() == 2 }, 10*time.Second, time.Millisecond,
		"a safety poll found a task but pushed no tokens for the two still pending")
	require.EqualValues(t, 2, w.Stats().PollWakes)
	w.pusher.Wait()
}
