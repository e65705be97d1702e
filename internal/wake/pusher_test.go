package wake_test

import (
	"context"
	"testing"

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
