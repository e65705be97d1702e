package wake_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/internal/wake"
)

// One token per task, per queue, capped at MaxTokens, and pushed by the
// time Wait returns.
func TestPusherTokensPerQueueCapped(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	p := wake.NewPusher(rdb, nil)
	for range wake.MaxTokens + 10 {
		p.Wake("a", 1)
	}
	p.Wake("b", 3)
	p.Wake("c", 0)
	p.Wait()
	ctx := context.Background()
	require.EqualValues(t, wake.MaxTokens, rdb.LLen(ctx, wake.Key("a")).Val())
	require.EqualValues(t, 3, rdb.LLen(ctx, wake.Key("b")).Val())
	require.Zero(t, rdb.Exists(ctx, wake.Key("c")).Val())
	require.Positive(t, rdb.TTL(ctx, wake.Key("b")).Val(), "a list nobody pops must expire")
	require.Zero(t, p.Failures())
}

// A nil Pusher (wake-ups off) does nothing.
func TestNilPusher(t *testing.T) {
	var p *wake.Pusher
	p.Wake("a", 1)
	p.Wait()
	require.Zero(t, p.Failures())
}

// Every wake list shares one hash tag, so one BLPOP covers any set of
// queues on a Redis Cluster.
func TestKeysShareOneSlot(t *testing.T) {
	for _, q := range []string{"invalidator-standard", "q{x}", "{y}"} {
		require.Regexp(t, `^invalidator:\{wake\}:`, wake.Key(q))
	}
}

// roundTrips counts the pipelines and single commands a client sends to
// the wake lists.
type roundTrips struct {
	mu    sync.Mutex
	trips int
	first chan struct{} // closed after the first round trip
	once  sync.Once
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		r.count([]redis.Cmder{cmd})
		return err
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		r.count(cmds)
		return err
	}
}
func (r *roundTrips) count(cmds []redis.Cmder) {
	// Only the wake lists' round trips: a new connection's HELLO and
	// CLIENT SETINFO pass the hooks too.
	if !slices.ContainsFunc(cmds, func(c redis.Cmder) bool {
		k, _ := c.Args()[min(1, len(c.Args())-1)].(string)
		return strings.HasPrefix(k, wake.Key(""))
	}) {
		return
	}
	r.mu.Lock()
	r.trips++
	r.mu.Unlock()
	r.once.Do(func() { close(r.first) })
}
func (r *roundTrips) n() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.trips
}

// A push to a list already at its cap (busy workers pop no tokens) trims
// it in the same round trip: under a steady flow nearly every push finds
// the list full, and a second round trip for the trim was a Redis call and
// a client round trip per push on the enqueue path's Redis.
func TestPusherTrimsInTheSameRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Client(t)
	full := make([]any, wake.MaxTokens)
	for i := range full {
		full[i] = "1"
	}
	require.NoError(t, rdb.LPush(ctx, wake.Key("a"), full...).Err())
	rt := &roundTrips{first: make(chan struct{})}
	rdb.AddHook(rt)
	p := wake.NewPusher(rdb, nil)
	p.Wake("a", 3)
	p.Wait()
	require.Equal(t, 1, rt.n(), "one round trip per push, the trim included")
	require.EqualValues(t, wake.MaxTokens, rdb.LLen(ctx, wake.Key("a")).Val())
	require.Zero(t, p.Failures())
}

// After a push that found a list full, the Pusher holds its next push for
// a moment, so that the wake-ups of a steady flow into busy workers share
// a push instead of costing a round trip every few tasks. The wake-ups
// are delayed, never dropped: Wait returns only once they are pushed.
func TestPusherHoldsPushesWhileTheListIsFull(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Client(t)
	full := make([]any, wake.MaxTokens)
	for i := range full {
		full[i] = "1"
	}
	require.NoError(t, rdb.LPush(ctx, wake.Key("a"), full...).Err())
	require.NoError(t, rdb.LPush(ctx, wake.Key("b"), "1").Err())
	rt := &roundTrips{first: make(chan struct{})}
	rdb.AddHook(rt)
	p := wake.NewPusher(rdb, nil)
	wake.SetBusyHold(p, time.Minute) // far longer than the test's calls take
	p.Wake("a", 1)
	<-rt.first
	for range 50 {
		p.Wake("a", 1)
	}
	p.Wake("b", 1)
	// Wait ends the hold: the held wake-ups go out at once (as on a
	// client's Close).
	p.Wait()
	require.Equal(t, 2, rt.n(), "the wake-ups during the hold share one push")
	require.EqualValues(t, wake.MaxTokens, rdb.LLen(ctx, wake.Key("a")).Val())
	require.EqualValues(t, 2, rdb.LLen(ctx, wake.Key("b")).Val(), "a held wake-up is pushed, not dropped")
}
