package freshness_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/freshness"
	"github.com/invalidator/invalidator/internal/redistest"
)

// The checker with the race forced: cacheaside serves no stale read, the
// plain control does, and the herd on one key costs cacheaside one load.
func TestRun(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	rep, err := freshness.Run(t.Context(), freshness.Config{
		Queue:         rdb,
		Duration:      2 * time.Second,
		Writers:       4,
		Readers:       8,
		HotKeyReaders: 200,
		ForcedRaces:   2,
		LagBound:      time.Second, // far above the real lag, even under -race
	})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, rep.Print(&out))
	t.Logf("report:\n%s", out.String())

	require.NoError(t, rep.Check())
	require.Zero(t, rep.CacheAside.StaleReads)
	require.Zero(t, rep.CacheAside.ForcedRaceStaleReads)
	require.EqualValues(t, 2, rep.Control.ForcedRaceStaleReads, "every forced race leaves the control stale")
	require.Positive(t, rep.Control.StaleReads)
	require.GreaterOrEqual(t, rep.CacheAside.StaleStoresPrevented, int64(2), "each forced race's store was refused")
	require.Positive(t, rep.CacheAside.Reads)
	require.Positive(t, rep.Control.Reads)
	require.Positive(t, rep.Writes)
	require.Zero(t, rep.CacheAside.Errors+rep.Control.Errors+rep.WriteErrors, rep.FirstError)
	require.EqualValues(t, 1, rep.LoaderCallsHotKey, "one load for the herd across both processes")
	require.Greater(t, rep.Control.LoaderCallsHotKey, rep.LoaderCallsHotKey)

	// The JSON form has what the issue asks for.
	b, err := json.Marshal(rep)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	for _, kind := range []string{"cacheaside", "control"} {
		k, ok := got[kind].(map[string]any)
		require.True(t, ok, kind)
		for _, f := range []string{"reads", "stale_reads", "staleness_p99_ms"} {
			require.Contains(t, k, f, kind)
		}
	}
	require.Contains(t, got, "loader_calls_hot_key")
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	_, err := freshness.Run(t.Context(), freshness.Config{})
	require.ErrorContains(t, err, "Config.Queue is nil")
	rdb := redistest.Client(t)
	_, err = freshness.Run(t.Context(), freshness.Config{Queue: rdb, Writers: -1})
	require.ErrorContains(t, err, "Writers -1 is negative")
	_, err = freshness.Run(t.Context(), freshness.Config{Queue: rdb, LagBound: -time.Second})
	require.ErrorContains(t, err, "LagBound -1s is negative")
}

func TestCheck(t *testing.T) {
	t.Parallel()
	ok := &freshness.Report{Control: freshness.KindReport{StaleReads: 3}}
	require.NoError(t, ok.Check())
	stale := &freshness.Report{CacheAside: freshness.KindReport{StaleReads: 1, Reads: 10}, Control: freshness.KindReport{StaleReads: 3}}
	require.ErrorIs(t, stale.Check(), freshness.ErrStale)
	blind := &freshness.Report{}
	require.ErrorIs(t, blind.Check(), freshness.ErrBlind)
}

// The same check on a Redis Cluster: queue and cache keys spread over the
// masters.
func TestRunCluster(t *testing.T) {
	t.Parallel()
	rep, err := freshness.Run(t.Context(), freshness.Config{
		Queue:         redistest.Cluster(t),
		Duration:      time.Second,
		Writers:       2,
		Readers:       4,
		HotKeyReaders: 100,
		ForcedRaces:   1,
		LagBound:      time.Second,
	})
	require.NoError(t, err)
	require.NoError(t, rep.Check())
	require.EqualValues(t, 1, rep.Control.ForcedRaceStaleReads)
	require.EqualValues(t, 1, rep.LoaderCallsHotKey)
}
