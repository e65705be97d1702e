package tasks

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestValidateDeleteKeys(t *testing.T) {
	t.Parallel()

	manyKeys := func(n int) []string {
		keys := make([]string, n)
		for i := range keys {
			keys[i] = "k"
		}
		return keys
	}

	valid := []DeleteKeys{
		{Keys: []string{"a"}},
		{Keys: manyKeys(MaxKeysPerTask)},
		{Keys: []string{strings.Repeat("\xff", MaxKeyBytes)}},
		{Keys: []string{"a"}, Target: strings.Repeat("t", MaxTargetBytes)},
		{Keys: []string{"a"}, Target: "Cache_1.eu-west"},
		{Keys: []string{"a"}, EnqueuedAt: time.Unix(0, math.MaxInt64)},
	}
	for _, task := range valid {
		require.NoError(t, task.Validate())
	}

	// 64 keys of MaxKeyBytes are fine per key but overflow the payload.
	tooBig := make([]string, 64)
	for i := range tooBig {
		tooBig[i] = strings.Repeat("x", MaxKeyBytes)
	}

	invalid := []struct {
		task DeleteKeys
		msg  string
	}{
		{DeleteKeys{}, "invalidate:keys task: no keys: invalid task"},
		{DeleteKeys{Keys: manyKeys(MaxKeysPerTask + 1)},
			"invalidate:keys task: 1001 keys exceed MaxKeysPerTask (1000), split them with SplitKeys: invalid task"},
		{DeleteKeys{Keys: []string{"a", "b", "c", ""}}, "invalidate:keys task: key 3: empty key: invalid task"},
		{DeleteKeys{Keys: []string{strings.Repeat("k", MaxKeyBytes+1)}},
			"invalidate:keys task: key 0: 16385 bytes exceed MaxKeyBytes (16384), keys are never truncated: invalid task"},
		{DeleteKeys{Keys: []string{"a"}, Target: "a b"},
			`invalidate:keys task: target name "a b": want letters, digits, '_', '.' and '-' only: invalid task`},
		{DeleteKeys{Keys: []string{"a"}, Target: "caché"},
			`invalidate:keys task: target name "caché": want letters, digits, '_', '.' and '-' only: invalid task`},
		{DeleteKeys{Keys: []string{"a"}, Target: strings.Repeat("t", MaxTargetBytes+1)},
			"invalidate:keys task: target name of 129 bytes exceeds MaxTargetBytes (128): invalid task"},
		{DeleteKeys{Keys: []string{"a"}, EnqueuedAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
			"invalidate:keys task: enqueued-at time 3000-01-01T00:00:00Z is outside the years 1678-2262: invalid task"},
		{DeleteKeys{Keys: []string{"a"}, EnqueuedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
			"invalidate:keys task: enqueued-at time 0001-01-01T00:00:00Z is outside the years 1678-2262: invalid task"},
		{DeleteKeys{Keys: tooBig},
			"invalidate:keys task: encoded payload of 1048774 bytes exceeds MaxPayloadBytes (1048576), split the keys with SplitKeys: invalid task"},
	}
	for _, c := range invalid {
		err := c.task.Validate()
		require.ErrorIs(t, err, ErrInvalid)
		require.EqualError(t, err, c.msg)
		// Marshal refuses what Validate refuses.
		_, err = Marshal(c.task)
		require.ErrorIs(t, err, ErrInvalid)
	}
}

func TestValidateFamilies(t *testing.T) {
	t.Parallel()

	valid := []map[string]string{
		nil,
		{},
		{"id": "42"},
		{"A_z_09": "\x00\xff any bytes"},
		{"id": strings.Repeat("v", MaxKeyBytes)},
	}
	for _, params := range valid {
		require.NoError(t, DeleteFamily{Family: "user", Params: params}.Validate())
		require.NoError(t, BumpVersion{Family: "user", Params: params}.Validate())
	}

	invalid := []struct {
		family string
		params map[string]string
		target string
		msg    string // after the "<kind> task: " prefix
	}{
		{"", nil, "", "empty family name: invalid task"},
		{strings.Repeat("f", MaxKeyBytes+1), nil, "", "family name of 16385 bytes exceeds MaxKeyBytes (16384): invalid task"},
		{"user", map[string]string{"": "1"}, "", `family "user": empty parameter name: invalid task`},
		{"user", map[string]string{"id": ""}, "",
			`family "user": parameter "id": empty value (leave the parameter out to match any value): invalid task`},
		{"user", map[string]string{"i-d": "1"}, "", `family "user": parameter name "i-d": want letters, digits and '_' only: invalid task`},
		{"user", map[string]string{"id*": "1"}, "", `family "user": parameter name "id*": want letters, digits and '_' only: invalid task`},
		{"user", map[string]string{"\xff": "1"}, "", `family "user": parameter name "\xff": want letters, digits and '_' only: invalid task`},
		{"user", map[string]string{"id": strings.Repeat("v", MaxKeyBytes+1)}, "",
			`family "user": parameter "id": value of 16385 bytes exceeds MaxKeyBytes (16384): invalid task`},
		// The first bad parameter in name order is reported, every time.
		{"user", map[string]string{"b": "", "a": ""}, "",
			`family "user": parameter "a": empty value (leave the parameter out to match any value): invalid task`},
		{"user", nil, "x/y", `target name "x/y": want letters, digits, '_', '.' and '-' only: invalid task`},
	}
	for _, c := range invalid {
		for _, task := range []Task{
			DeleteFamily{Family: c.family, Params: c.params, Target: c.target},
			BumpVersion{Family: c.family, Params: c.params, Target: c.target},
			Event{Name: c.family, Attrs: c.params, Target: c.target},
		} {
			err := task.Validate()
			require.ErrorIs(t, err, ErrInvalid)
			msg := c.msg
			if _, ok := task.(Event); ok {
				msg = strings.NewReplacer("family name", "event name", `family "`, `event "`).Replace(msg)
			}
			require.EqualError(t, err, task.Kind()+" task: "+msg)
			_, err = Marshal(task)
			require.ErrorIs(t, err, ErrInvalid)
		}
	}

	// Many maximal values overflow the payload even though each is valid.
	params := map[string]string{}
	for i := range 64 {
		params["p"+strings.Repeat("x", i)] = strings.Repeat("v", MaxKeyBytes)
	}
	err := DeleteFamily{Family: "f", Params: params}.Validate()
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, "exceeds MaxPayloadBytes")
}
