package wake

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// Of two workers serving the same queues, one runs asynq's forwarder
// scripts in an interval; the other's calls are answered "nothing due"
// without reaching Redis. A worker with other queues forwards its own.
func TestForwardOnePerFleet(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	ctx := context.Background()
	waiter := func(queues ...string) (*Waiter, redis.UniversalClient) {
		w, err := NewWaiter(WaiterConfig{Queues: queues, ForwardInterval: time.Hour})
		require.NoError(t, err)
		c, err := Dedicated(db.Client)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		w.Attach(c)
		return w, c
	}
	forward := func(c redis.UniversalClient, q string) {
		n, err := forwardScript.Run(ctx, c, []string{asynqKey(q, "retry"), asynqKey(q, "pending")},
			time.Now().Unix(), taskKeyPrefix(q), time.Now().UnixNano(), asynqKey(q, "g:")).Int64()
		require.NoError(t, err)
		require.Zero(t, n)
	}
	a, ca := waiter("q1", "q2")
	b, cb := waiter("q2", "q1")
	other, co := waiter("q3")
	forward(ca, "q1")
	forward(ca, "q2")
	forward(cb, "q1")
	forward(cb, "q2")
	forward(co, "q3")
	require.Zero(t, a.Stats().FwdSkipped)
	require.EqualValues(t, 2, b.Stats().FwdSkipped)
	require.Zero(t, other.Stats().FwdSkipped)
}
