package redistest_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

func TestServer_PauseAnswersNothingUntilResumed(t *testing.T) {
	t.Parallel()
	s := redistest.StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ReadTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Set(t.Context(), "k", "v", 0).Err())

	s.Pause()
	s.Pause() // idempotent
	err := c.Get(t.Context(), "k").Err()
	var ne interface{ Timeout() bool }
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "a paused server must time out, got %v", err)

	s.Resume()
	s.Resume() // idempotent
	require.Eventually(t, func() bool { return c.Get(context.Background(), "k").Val() == "v" }, 10*time.Second, 10*time.Millisecond,
		"the resumed server keeps its data")

	s.Pause()
	s.Stop() // a paused server can be stopped
	s.Start()
	require.Eventually(t, func() bool { return c.Ping(context.Background()).Err() == nil }, 10*time.Second, 10*time.Millisecond)
}

func TestServer_AppendOnlyKeepsAcknowledgedWritesAcrossAKill(t *testing.T) {
	t.Parallel()
	s := redistest.StartServerWith(t, redistest.ServerOptions{AppendOnly: true})
	c := s.NewClient()
	ctx := t.Context()
	for i := range 100 {
		require.NoError(t, c.RPush(ctx, "list", i).Err())
	}
	aof, err := c.ConfigGet(ctx, "appendfsync").Result()
	require.NoError(t, err)
	require.Equal(t, "always", aof["appendfsync"])
	dir, err := c.ConfigGet(ctx, "dir").Result()
	require.NoError(t, err)

	s.Stop() // SIGKILL: no shutdown save
	s.Start()
	require.Equal(t, int64(100), c.LLen(ctx, "list").Val(), "writes acknowledged before the kill were lost")
	again, err := c.ConfigGet(ctx, "dir").Result()
	require.NoError(t, err)
	require.Equal(t, dir["dir"], again["dir"], "the restarted server must use the same directory")
	_, err = os.Stat(dir["dir"])
	require.NoError(t, err)
}

func TestServer_PasswordIsRequired(t *testing.T) {
	t.Parallel()
	s := redistest.StartServerWith(t, redistest.ServerOptions{Password: "test-pw"})
	require.NoError(t, s.NewClient().Ping(t.Context()).Err(), "NewClient carries the password")
	opts, err := redis.ParseURL(s.URL())
	require.NoError(t, err)
	require.Equal(t, "test-pw", opts.Password, "URL carries the password")

	anon := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = anon.Close() })
	require.ErrorContains(t, anon.Ping(t.Context()).Err(), "NOAUTH")

	s.Stop()
	s.Start() // a restart waits for the server with the password too
	require.NoError(t, s.NewClient().Ping(t.Context()).Err())
}
