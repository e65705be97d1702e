package main

import (
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/internal/wake"
	"github.com/invalidator/invalidator/worker"
)

// bench idle runs idle worker processes and reports both CPU figures in
// its JSON; it leaves no queue or wake list behind.
func TestBenchIdle(t *testing.T) {
	t.Parallel()
	bin := testBinary(t)
	srv := redistest.StartServer(t)
	for _, mode := range [][]string{nil, {"--poll-only"}} {
		args := append([]string{"bench", "idle", "--redis", srv.URL(), "--workers", "2", "--duration", "1s", "--warmup", "1s", "--json"}, mode...)
		out, err := exec.Command(bin, args...).Output()
		require.NoError(t, err, "%s", out)
		var res map[string]any
		require.NoError(t, json.Unmarshal(out, &res), "%s", out)
		require.Equal(t, "idle", res["scenario"])
		require.Contains(t, res, "redis_cpu_percent")
		require.Contains(t, res, "workers_cpu_percent")
		require.Equal(t, len(mode) > 0, res["params"].(map[string]any)["poll_only"])
		// No --poll-interval: the workers default it, and the report says to what.
		require.Equal(t, worker.DefaultPollInterval.String(), res["params"].(map[string]any)["poll_interval"])
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	left, err := rdb.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	for _, k := range left {
		require.NotContains(t, k, "invalidator-bench", "bench idle left %q behind", k)
	}
	require.Zero(t, rdb.Exists(t.Context(), wake.Key("invalidator-bench")).Val())
}
