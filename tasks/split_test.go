package tasks

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestKeysHeaderMax(t *testing.T) {
	t.Parallel()

	// keysHeaderMax hard-codes these widths because Go constants cannot
	// call functions.
	require.LessOrEqual(t, uvarintLen(MaxTargetBytes), 2)
	require.LessOrEqual(t, uvarintLen(MaxKeysPerTask), 2)

	// The widest header really is keysHeaderMax bytes.
	task := DeleteKeys{Keys: []string{"k"}, Target: strings.Repeat("t", MaxTargetBytes), EnqueuedAt: time.Unix(0, math.MinInt64)}
	payload, err := Marshal(task)
	require.NoError(t, err)
	require.LessOrEqual(t, len(payload)-stringLen("k"), keysHeaderMax)
}

func keysOf(n, size int) []string {
	keys := make([]string, n)
	for i := range keys {
		// Unique prefix, padded with binary bytes up to size when it fits.
		k := fmt.Sprintf("k%d:", i)
		keys[i] = k + strings.Repeat("\xff", max(0, size-len(k)))
	}
	return keys
}

// requireValidSplit checks that chunks are keys in order, and that each
// chunk marshals with the worst-case target and time.
func requireValidSplit(t *testing.T, keys []string, chunks [][]string) {
	t.Helper()
	var joined []string
	for i, c := range chunks {
		require.NotEmpty(t, c, "chunk %d", i)
		joined = append(joined, c...)
		payload, err := Marshal(DeleteKeys{
			Keys:       c,
			Target:     strings.Repeat("t", MaxTargetBytes),
			EnqueuedAt: time.Unix(0, math.MinInt64),
		})
		require.NoError(t, err, "chunk %d", i)
		require.LessOrEqual(t, len(payload), MaxPayloadBytes)
	}
	// Not require.Equal: a failure would print megabytes of keys.
	require.True(t, slices.Equal(keys, joined), "chunks do not concatenate to the input keys")
}

func TestSplitKeysCountBoundaries(t *testing.T) {
	t.Parallel()

	cases := []struct {
		n    int
		want []int
	}{
		{1, []int{1}},
		{999, []int{999}},
		{1000, []int{1000}},
		{1001, []int{1000, 1}},
		{2000, []int{1000, 1000}},
		{2001, []int{1000, 1000, 1}},
	}
	for _, c := range cases {
		keys := keysOf(c.n, 10)
		chunks, err := SplitKeys(keys)
		require.NoError(t, err)
		var sizes []int
		for _, ch := range chunks {
			sizes = append(sizes, len(ch))
		}
		require.Equal(t, c.want, sizes, "%d keys", c.n)
		requireValidSplit(t, keys, chunks)
	}
}

func TestSplitKeysPayloadBoundaries(t *testing.T) {
	t.Parallel()

	// Maximal keys: 1000 of them would be 16 MiB, so the payload limit, not
	// the count, drives the split.
	keys := keysOf(MaxKeysPerTask, MaxKeyBytes)
	chunks, err := SplitKeys(keys)
	require.NoError(t, err)
	requireValidSplit(t, keys, chunks)

	perChunk := (MaxPayloadBytes - keysHeaderMax) / stringLen(keys[0])
	require.Equal(t, 63, perChunk, "sanity: 63 keys of 16 KiB fit in 1 MiB")
	for i, c := range chunks[:len(chunks)-1] {
		require.Equal(t, perChunk, len(c), "chunk %d is not full", i)
	}
	require.Equal(t, (MaxKeysPerTask+perChunk-1)/perChunk, len(chunks))

	// Keys that fill the byte budget exactly stay in one task; one more
	// 1-byte key spills into a second.
	budget := MaxPayloadBytes - keysHeaderMax
	exact := keysOf(budget/stringLen(keys[0]), MaxKeyBytes)
	used := len(exact) * stringLen(keys[0])
	last := strings.Repeat("z", budget-used-2) // 2-byte length prefix
	exact = append(exact, last)
	require.Equal(t, budget, used+stringLen(last), "test setup: keys fill the budget exactly")

	chunks, err = SplitKeys(exact)
	require.NoError(t, err)
	require.Equal(t, 1, len(chunks), "keys that fill the budget exactly stay in one task")
	requireValidSplit(t, exact, chunks)

	over := append(exact[:len(exact):len(exact)], "y")
	chunks, err = SplitKeys(over)
	require.NoError(t, err)
	require.Equal(t, 2, len(chunks))
	require.Equal(t, []string{"y"}, chunks[1])
	requireValidSplit(t, over, chunks)
}

func TestSplitKeysChunksDoNotShareCapacity(t *testing.T) {
	t.Parallel()

	keys := keysOf(1500, 5)
	chunks, err := SplitKeys(keys)
	require.NoError(t, err)
	require.Equal(t, 2, len(chunks))
	_ = append(chunks[0], "appended")
	require.Equal(t, keys[1000], chunks[1][0], "appending to chunk 0 overwrote chunk 1")
}

func TestSplitKeysErrors(t *testing.T) {
	t.Parallel()

	cases := []struct {
		keys []string
		msg  string
	}{
		{nil, "split keys: no keys: invalid task"},
		{[]string{}, "split keys: no keys: invalid task"},
		{[]string{"a", ""}, "split keys: key 1: empty key: invalid task"},
		{[]string{"a", "b", strings.Repeat("x", MaxKeyBytes+1)},
			"split keys: key 2: 16385 bytes exceed MaxKeyBytes (16384), keys are never truncated: invalid task"},
	}
	for _, c := range cases {
		chunks, err := SplitKeys(c.keys)
		require.Nil(t, chunks)
		require.ErrorIs(t, err, ErrInvalid)
		require.EqualError(t, err, c.msg)
	}
}
