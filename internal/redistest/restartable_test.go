package redistest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

func TestServer_StopAndStartOnTheSamePort(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := redistest.StartServer(t)
	c := s.NewClient()
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	addr := s.Addr()

	s.Stop()
	s.Stop() // idempotent
	require.Error(t, c.Ping(ctx).Err())

	s.Start()
	s.Start() // idempotent
	require.Equal(t, addr, s.Addr())
	require.NoError(t, c.Ping(ctx).Err(), "the same client reconnects")
	require.Zero(t, c.Exists(ctx, "k").Val(), "a restarted server is empty")
	require.Equal(t, "redis://"+addr+"/0", s.URL())
}
