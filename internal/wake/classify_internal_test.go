package wake

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClassify(t *testing.T) {
	dq := []any{"evalsha", dequeueSHA, 4, "asynq:{q1}:pending", "asynq:{q1}:paused", "asynq:{q1}:active", "asynq:{q1}:lease", int64(7), "asynq:{q1}:t:"}
	c, ok := classify(dq)
	require.True(t, ok)
	require.Equal(t, call{queue: "q1", known: true, sha: dequeueSHA, leaseArg: int64(7)}, c)

	// EVAL with the script text (the NOSCRIPT fallback) is the same call.
	ev := append([]any{"eval", dequeueSrc}, dq[2:]...)
	c, ok = classify(ev)
	require.True(t, ok)
	require.True(t, c.known)

	// The same keys with another script: recognised as foreign.
	other := append([]any{"evalsha", "0123"}, dq[2:]...)
	c, ok = classify(other)
	require.True(t, ok)
	require.False(t, c.known)

	fw := []any{"evalsha", forwardSHA, 2, "asynq:{q2}:retry", "asynq:{q2}:pending", int64(1), "p", int64(2), "g"}
	c, ok = classify(fw)
	require.True(t, ok)
	require.Equal(t, call{queue: "q2", forward: true, known: true, sha: forwardSHA}, c)

	for _, args := range [][]any{
		{"get", "x"},
		{"evalsha", dequeueSHA, 4, "asynq:{q1}:pending", "asynq:{q2}:paused", "asynq:{q1}:active", "asynq:{q1}:lease", 1, "p"},
		{"evalsha", dequeueSHA, 4, "asynq:{q1}:pending"},
		{"evalsha", forwardSHA, 2, "asynq:{q2}:archived", "asynq:{q2}:pending", 1, "p", 2, "g"},
	} {
		_, ok := classify(args)
		require.False(t, ok, "%v", args)
	}
}
