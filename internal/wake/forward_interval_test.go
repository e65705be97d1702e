package wake

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// The forward lock is per forward interval. When its key was the hash of
// the served queues only, a worker started with a long --retry-check-interval (5s)
// held the lock for 4.5s at each of its ticks; a fleet-mate with 100ms was
// skipped all that time, so a due retry waited ~the slow worker's interval.
func TestForwardLockPerInterval(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	ctx := context.Background()
	mk := func(iv time.Duration) *Waiter {
		w, err := NewWaiter(WaiterConfig{Queues: []string{"q"}, ForwardInterval: iv})
		require.NoError(t, err)
		c, err := Dedicated(db.Client)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		w.Attach(c)
		return w
	}
	slow, fast := mk(5*time.Second), mk(100*time.Millisecond)
	forward := func(w *Waiter) int64 {
		n, err := forwardScript.Run(ctx, w.rdb, []string{asynqKey("q", "retry"), asynqKey("q", "pending")},
			time.Now().Unix(), taskKeyPrefix("q"), time.Now().UnixNano(), asynqKey("q", "g:")).Int64()
		require.NoError(t, err)
		return n
	}
	forward(slow) // the slow worker's tick: it takes the lock for 4.5s
	// A retry becomes due now.
	require.NoError(t, db.Client.ZAdd(ctx, asynqKey("q", "retry"), redisZ(time.Now().Unix()-1, "id1")).Err())
	require.NoError(t, db.Client.HSet(ctx, taskKeyPrefix("q")+"id1", "state", "retry").Err())
	start := time.Now()
	for forward(fast) == 0 && time.Since(start) < 10*time.Second {
		time.Sleep(100 * time.Millisecond) // the fast worker's ticks
	}
	t.Logf("due retry forwarded after %v by the 100ms worker (skipped %d ticks)", time.Since(start).Round(time.Millisecond), fast.Stats().FwdSkipped)
	require.Less(t, time.Since(start), time.Second)
}

func redisZ(score int64, m string) redis.Z { return redis.Z{Score: float64(score), Member: m} }
