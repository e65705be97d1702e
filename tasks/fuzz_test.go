package tasks

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzUnmarshal feeds arbitrary payloads to every kind: decoding never
// panics, fails only with this package's errors, and whatever decodes
// re-encodes to the same bytes and the same task (the encoding is canonical).
//
// The seed corpus in testdata/fuzz/FuzzUnmarshal holds a valid payload of
// each kind, truncated ones and a newer-format one.
func FuzzUnmarshal(f *testing.F) {
	for _, task := range validTasks() {
		payload, err := Marshal(task)
		require.NoError(f, err)
		if len(payload) < 4096 { // the fuzzer mutates small inputs better
			f.Add(payload)
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		decoded := 0
		for _, kind := range append(Kinds(), "not:a:kind") {
			task, err := Unmarshal(kind, payload)
			if err != nil {
				require.Nil(t, task)
				require.True(t, errors.Is(err, ErrUnknownKind) || errors.Is(err, ErrMalformed) ||
					errors.Is(err, ErrNewerFormat) || errors.Is(err, ErrInvalid), "unexpected error %v", err)
				require.NotEmpty(t, Describe(kind, payload))
				continue
			}
			decoded++
			require.Equal(t, kind, task.Kind())
			require.NoError(t, task.Validate())

			again, err := Marshal(task)
			require.NoError(t, err)
			require.True(t, bytes.Equal(payload, again), "re-encoding changed the payload:\n%x\n%x", payload, again)
			back, err := Unmarshal(kind, again)
			require.NoError(t, err)
			require.Equal(t, task, back)
			require.NotContains(t, Describe(kind, payload), "undecodable")
		}
		// The kind code makes a payload belong to at most one kind.
		require.LessOrEqual(t, decoded, 1)
	})
}

// FuzzRoundTrip checks that arbitrary bytes survive as keys, family names and
// parameter values, and times survive to the nanosecond.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("user:1"), []byte("\x00\xff\xc3\x28"), []byte("42"), int64(1746100000000000000))
	f.Add([]byte("\x80"), []byte("\xed\xa0\x80"), []byte("\xff"), int64(-1))
	f.Add([]byte(strings.Repeat("\xfe", 300)), []byte("{tag}"), []byte("\x00"), int64(0))

	f.Fuzz(func(t *testing.T, key1, key2, value []byte, nanos int64) {
		at := time.Unix(0, nanos).UTC()
		if nanos == 0 {
			at = time.Time{} // documented: the epoch itself decodes as the zero time
		}
		keys := []string{string(key1), string(key2)}
		if len(key1) == 0 || len(key2) == 0 || len(key1) > MaxKeyBytes || len(key2) > MaxKeyBytes {
			_, err := Marshal(DeleteKeys{Keys: keys})
			require.ErrorIs(t, err, ErrInvalid)
			return
		}
		tasks := []Task{
			DeleteKeys{Keys: keys, Target: "t", EnqueuedAt: at},
			DeleteFamily{Family: string(key1), Params: map[string]string{"a": string(key2), "b_2": string(key1)}, EnqueuedAt: at},
		}
		if len(value) > 0 && len(value) <= MaxKeyBytes {
			tasks = append(tasks,
				BumpVersion{Family: string(key2), Params: map[string]string{"id": string(value)}, Target: "x.y", EnqueuedAt: at},
				Event{Name: string(key1), Attrs: map[string]string{"id": string(value)}, EnqueuedAt: at})
		}
		for _, task := range tasks {
			payload, err := Marshal(task)
			require.NoError(t, err)
			got, err := Unmarshal(task.Kind(), payload)
			require.NoError(t, err)
			require.Equal(t, task, got)
		}

		// The chunks SplitKeys makes hold the same bytes.
		chunks, err := SplitKeys(keys)
		require.NoError(t, err)
		require.Equal(t, [][]string{keys}, chunks)
	})
}
