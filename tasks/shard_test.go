package tasks_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/tasks"
)

func TestShardKey(t *testing.T) {
	t.Parallel()
	require.Equal(t, "a", tasks.ShardKey(tasks.DeleteKeys{Keys: []string{"a", "b"}}))
	require.Equal(t, "fam", tasks.ShardKey(tasks.DeleteFamily{Family: "fam", Params: map[string]string{"id": "1"}}))
	// Parameters in any order give one key, and different values differ.
	a := tasks.ShardKey(tasks.BumpVersion{Family: "f", Params: map[string]string{"a": "1", "b": "2"}})
	require.Equal(t, a, tasks.ShardKey(tasks.BumpVersion{Family: "f", Params: map[string]string{"b": "2", "a": "1"}}))
	require.NotEqual(t, a, tasks.ShardKey(tasks.BumpVersion{Family: "f", Params: map[string]string{"a": "1", "b": "3"}}))
	// A value cannot pass for the next parameter.
	require.NotEqual(t,
		tasks.ShardKey(tasks.Event{Name: "e", Attrs: map[string]string{"a": "1\x00b=2"}}),
		tasks.ShardKey(tasks.Event{Name: "e", Attrs: map[string]string{"a": "1", "b": "2"}}))
}
