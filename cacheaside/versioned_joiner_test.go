package cacheaside_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
)

// The singleflight guard in get() ("a caller that joined a load which
// may predate a write must not take its value") relies on outcome.trusted,
// which loadAndStore sets when the store CAS succeeded. For GetVersioned the
// invalidation is a version bump, which does not touch the leased data key,
// so the CAS still succeeds after a bump: the outcome is "trusted" and a
// caller that started after the bump (write committed, invalidation applied)
// joins the in-flight load and gets the value read before the write.
// The delete-strategy equivalent is TestGetJoinedCallerRetriesRefusedLoad.
func TestGetVersionedJoinerAfterBumpLoadsFresh(t *testing.T) {
	t.Parallel()
	b := setup(t, cacheaside.Config{})
	flights := make(chan struct{}, 4)
	cacheaside.OnFlight(b.cache, func() { flights <- struct{}{} })
	p := feedPolicy(t)
	fam, err := p.Family("feed")
	require.NoError(t, err)
	params := map[string]string{"user": "7"}
	bump(t, b.rdb, p, "feed", params)

	src := newSource("old")
	g := newGate(src)
	leader := make(chan string, 1)
	go func() {
		v, _ := b.cache.GetVersioned(context.Background(), fam, params, g.load)
		leader <- string(v)
	}()
	require.Equal(t, "old", <-g.loaded)
	<-flights // the leader's
	src.set("new")
	bump(t, b.rdb, p, "feed", params) // the write's invalidation has completed

	follower := make(chan string, 1)
	go func() {
		v, _ := b.cache.GetVersioned(context.Background(), fam, params, src.load) // starts after the bump
		follower <- string(v)
	}()
	<-flights // the follower has joined the leader's load, still held by the gate
	close(g.release)
	require.Equal(t, "old", <-leader)
	require.Equal(t, "new", <-follower, "a read that started after the version bump was served the pre-write value")
	require.EqualValues(t, 2, src.calls.Load(), "the follower loaded again")
}
