package tasks

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// binaryKeys are keys that a text codec would mangle.
func binaryKeys() []string {
	return []string{
		"user:1",
		"nul\x00inside",
		"\x00",
		"\xff",
		"\xff\xfe\xfd",
		"bad utf8 \xc3\x28 here",
		"\x80\x81\x82 lone continuation bytes",
		"\xed\xa0\x80 surrogate half",
		"ok ünïcödé 🔑",
		"\ufffd already a replacement char",
		strings.Repeat("\xff", MaxKeyBytes),
		strings.Repeat("k", MaxKeyBytes-1) + "\x80",
	}
}

func validTasks() []Task {
	at := time.Date(2025, 5, 1, 12, 30, 0, 123456789, time.UTC)
	return []Task{
		DeleteKeys{Keys: []string{"user:1"}},
		DeleteKeys{Keys: binaryKeys(), Target: "sessions-eu.1", EnqueuedAt: at},
		DeleteFamily{Family: "user_profile"},
		DeleteFamily{Family: "user_profile", Params: map[string]string{"id": "42", "locale": "\xff\x00en"}, Target: "main", EnqueuedAt: at},
		BumpVersion{Family: "catalog", Params: map[string]string{"shop_id": "7"}},
		BumpVersion{Family: "fam:\xff", Params: map[string]string{"A_1": "x", "a_1": "y", "Z": "z"}, EnqueuedAt: time.Unix(0, -1).UTC()},
		Event{Name: "product.updated", Attrs: map[string]string{"id": "7"}},
		Event{Name: "user.deleted", Attrs: map[string]string{"id": "\x00\xff", "tenant": "t"}, Target: "eu", EnqueuedAt: at},
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()

	for _, task := range validTasks() {
		payload, err := Marshal(task)
		require.NoError(t, err, "marshal %#v", task)
		got, err := Unmarshal(task.Kind(), payload)
		require.NoError(t, err)
		require.Equal(t, task, got)
	}
}

func TestRoundTripBinaryKeysOneByOne(t *testing.T) {
	t.Parallel()

	for _, k := range binaryKeys() {
		payload, err := Marshal(DeleteKeys{Keys: []string{k}})
		require.NoError(t, err)
		got, err := Unmarshal(KindDeleteKeys, payload)
		require.NoError(t, err)
		// Compare bytes, so a failure shows the exact difference.
		require.Equal(t, []byte(k), []byte(got.(DeleteKeys).Keys[0]))
	}
}

// TestJSONWouldDeleteTheWrongKey is why the codec is not JSON.
func TestJSONWouldDeleteTheWrongKey(t *testing.T) {
	t.Parallel()

	key := "session:\xff\xfe:\xc3\x28"

	viaJSON, err := json.Marshal([]string{key})
	require.NoError(t, err)
	var back []string
	require.NoError(t, json.Unmarshal(viaJSON, &back))
	require.NotEqual(t, key, back[0], "encoding/json is expected to mangle invalid UTF-8")
	require.Equal(t, "session:\ufffd\ufffd:\ufffd(", back[0])

	payload, err := Marshal(DeleteKeys{Keys: []string{key}})
	require.NoError(t, err)
	got, err := Unmarshal(KindDeleteKeys, payload)
	require.NoError(t, err)
	require.Equal(t, key, got.(DeleteKeys).Keys[0])
}

// TestWireFormatGolden pins the version 1 layout byte by byte: queued tasks
// outlive builds, so any change here must come with a new FormatVersion.
func TestWireFormatGolden(t *testing.T) {
	t.Parallel()

	cases := []struct {
		task Task
		want []byte
	}{{
		task: DeleteKeys{Keys: []string{"a", "\xff"}, Target: "t", EnqueuedAt: time.Unix(0, 1)},
		want: []byte{
			0xC1, 1, 1, // magic, version, kind code
			1, 't', // target
			2,               // enqueued-at: zigzag(1)
			2,               // key count
			1, 'a', 1, 0xff, // keys
		},
	}, {
		task: DeleteFamily{Family: "u", Params: map[string]string{"b": "2", "a": "1"}},
		want: []byte{
			0xC1, 1, 2,
			0,      // target ""
			0,      // zero time
			1, 'u', // family
			2, // param count, then names ascending
			1, 'a', 1, '1',
			1, 'b', 1, '2',
		},
	}, {
		task: BumpVersion{Family: "u", EnqueuedAt: time.Unix(0, -1)},
		want: []byte{0xC1, 1, 3, 0, 1, 1, 'u', 0},
	}, {
		task: DeleteKeys{Keys: []string{strings.Repeat("x", 200)}, EnqueuedAt: time.Unix(0, 64)},
		want: append([]byte{0xC1, 1, 1, 0, 0x80, 0x01, 1, 0xC8, 0x01}, strings.Repeat("x", 200)...),
	}}
	for _, c := range cases {
		got, err := Marshal(c.task)
		require.NoError(t, err)
		require.Equal(t, c.want, got, "%#v", c.task)
	}
}

func TestMarshalDeterministic(t *testing.T) {
	t.Parallel()

	params := map[string]string{}
	for _, name := range []string{"z", "a", "m", "B", "_", "a1", "a0", "Z9"} {
		params[name] = "v" + name
	}
	task := DeleteFamily{Family: "f", Params: params}
	first, err := Marshal(task)
	require.NoError(t, err)
	// Map iteration order is random per range; many runs would catch an
	// encoder that follows it.
	for range 50 {
		again, err := Marshal(DeleteFamily{Family: "f", Params: cloneMap(params)})
		require.NoError(t, err)
		require.Equal(t, first, again)
	}
}

func cloneMap(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func TestMarshalPointersAndBadInput(t *testing.T) {
	t.Parallel()

	byValue, err := Marshal(DeleteKeys{Keys: []string{"k"}})
	require.NoError(t, err)
	byPointer, err := Marshal(&DeleteKeys{Keys: []string{"k"}})
	require.NoError(t, err)
	require.Equal(t, byValue, byPointer)

	_, err = Marshal(&DeleteFamily{Family: "f"})
	require.NoError(t, err)
	_, err = Marshal(&BumpVersion{Family: "f"})
	require.NoError(t, err)

	for _, task := range []Task{nil, (*DeleteKeys)(nil), (*DeleteFamily)(nil), (*BumpVersion)(nil)} {
		_, err = Marshal(task)
		require.ErrorIs(t, err, ErrInvalid, "%T", task)
	}

	_, err = Marshal(foreignTask{})
	require.ErrorIs(t, err, ErrUnknownKind)
	require.ErrorContains(t, err, "tasks.foreignTask")

	_, err = Marshal(DeleteKeys{})
	require.ErrorIs(t, err, ErrInvalid)
	require.EqualError(t, err, "encode invalidate:keys payload: no keys: invalid task")
}

type foreignTask struct{}

func (foreignTask) Kind() string    { return KindDeleteKeys }
func (foreignTask) Validate() error { return nil }

func TestTimeRoundTrip(t *testing.T) {
	t.Parallel()

	for _, at := range []time.Time{
		time.Now(),
		time.Now().In(time.FixedZone("x", 3600)),
		time.Unix(0, 1),
		time.Unix(0, -1),
		time.Unix(0, math.MaxInt64),
		time.Unix(0, math.MinInt64),
		time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		payload, err := Marshal(DeleteKeys{Keys: []string{"k"}, EnqueuedAt: at})
		require.NoError(t, err)
		got, err := Unmarshal(KindDeleteKeys, payload)
		require.NoError(t, err)
		require.True(t, at.Equal(got.(DeleteKeys).EnqueuedAt), "%s came back as %s", at, got.(DeleteKeys).EnqueuedAt)
	}

	// The zero time stays zero (and so, documented, does the epoch itself).
	for _, at := range []time.Time{{}, time.Unix(0, 0)} {
		payload, err := Marshal(DeleteKeys{Keys: []string{"k"}, EnqueuedAt: at})
		require.NoError(t, err)
		got, err := Unmarshal(KindDeleteKeys, payload)
		require.NoError(t, err)
		require.True(t, got.(DeleteKeys).EnqueuedAt.IsZero())
	}
}

// TestUnmarshalTruncatedEverywhere cuts valid payloads at every offset: each
// prefix must fail with ErrMalformed, never panic or decode.
func TestUnmarshalTruncatedEverywhere(t *testing.T) {
	t.Parallel()

	for _, task := range validTasks() {
		payload, err := Marshal(task)
		require.NoError(t, err)
		// The long binary keys make big payloads; their middles add nothing.
		for cut := 0; cut < len(payload); cut++ {
			if cut > 200 && cut < len(payload)-200 && cut%997 != 0 {
				continue
			}
			_, err := Unmarshal(task.Kind(), payload[:cut])
			require.ErrorIs(t, err, ErrMalformed, "%s cut at %d of %d", task.Kind(), cut, len(payload))
		}
		// And the other way: one byte too many.
		_, err = Unmarshal(task.Kind(), append(payload, 0))
		require.ErrorIs(t, err, ErrMalformed)
		require.ErrorContains(t, err, "1 trailing bytes")
	}
}

// header builds the start of a payload: magic, version, kind code, empty
// target, zero time.
func header(code byte) []byte { return []byte{magic, FormatVersion, code, 0, 0} }

func TestUnmarshalErrors(t *testing.T) {
	t.Parallel()

	uv := func(b []byte, x uint64) []byte { return binary.AppendUvarint(b, x) }
	longKey := strings.Repeat("k", MaxKeyBytes+1)

	cases := []struct {
		name    string
		kind    string
		payload []byte
		is      error
		msg     string // the full error text
	}{
		{"unknown kind", "email:send", header(codeDeleteKeys), ErrUnknownKind,
			`decode email:send payload: unknown task kind`},
		{"empty", KindDeleteKeys, nil, ErrMalformed,
			`decode invalidate:keys payload: 0 bytes is shorter than the 3-byte header: malformed payload`},
		{"json", KindDeleteKeys, []byte(`{"keys":["a"]}`), ErrMalformed,
			`decode invalidate:keys payload: bad magic byte 0x7b, want 0xc1 (not written by this package): malformed payload`},
		{"version 0", KindDeleteKeys, []byte{magic, 0, codeDeleteKeys, 0, 0, 1, 1, 'a'}, ErrMalformed,
			`decode invalidate:keys payload: format version 0: malformed payload`},
		{"newer version", KindDeleteKeys, []byte{magic, FormatVersion + 1, 0xEE}, ErrNewerFormat,
			`decode invalidate:keys payload: format version 2, this build reads up to 1: payload written by a newer format version: upgrade the worker`},
		{"kind mismatch", KindDeleteKeys, append(header(codeDeleteFamily), 1, 'f', 0), ErrMalformed,
			`decode invalidate:keys payload: payload is for invalidate:family (kind code 2), not this kind: malformed payload`},
		{"unknown kind code", KindBumpVersion, []byte{magic, 1, 9}, ErrMalformed,
			`decode invalidate:version payload: payload is for an unknown kind (kind code 9), not this kind: malformed payload`},
		{"key past the end", KindDeleteKeys, append(uv(uv(append(header(codeDeleteKeys), 4, 1, 'a', 1, 'b', 1, 'c'), 70000), 0), make([]byte, 11)...), ErrMalformed,
			`decode invalidate:keys payload: key 3: length 70000 exceeds remaining 12 bytes: malformed payload`},
		{"huge key count", KindDeleteKeys, uv(header(codeDeleteKeys), 1<<60), ErrMalformed,
			`decode invalidate:keys payload: key count 1152921504606846976 exceeds what the remaining 0 bytes can hold: malformed payload`},
		{"too many keys", KindDeleteKeys, append(uv(header(codeDeleteKeys), MaxKeysPerTask+1), make([]byte, MaxKeysPerTask+1)...), ErrInvalid,
			`decode invalidate:keys payload: key count 1001 exceeds the limit of 1000: invalid task`},
		{"zero keys", KindDeleteKeys, append(header(codeDeleteKeys), 0), ErrInvalid,
			`decode invalidate:keys payload: no keys: invalid task`},
		{"empty key", KindDeleteKeys, append(header(codeDeleteKeys), 2, 1, 'a', 0), ErrInvalid,
			`decode invalidate:keys payload: key 1: empty key: invalid task`},
		{"key too long", KindDeleteKeys, append(uv(append(header(codeDeleteKeys), 1), uint64(len(longKey))), longKey...), ErrInvalid,
			`decode invalidate:keys payload: key 0: length 16385 exceeds the limit of 16384 bytes: invalid task`},
		{"varint overflow", KindDeleteKeys, append(header(codeDeleteKeys), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), ErrMalformed,
			`decode invalidate:keys payload: key count: varint overflows 64 bits at byte 5: malformed payload`},
		{"truncated varint", KindDeleteKeys, append(header(codeDeleteKeys), 0x80), ErrMalformed,
			`decode invalidate:keys payload: key count: truncated at byte 5: malformed payload`},
		{"non-minimal varint", KindDeleteKeys, append(header(codeDeleteKeys), 0x81, 0x00, 1, 'a'), ErrMalformed,
			`decode invalidate:keys payload: key count: varint not in shortest form at byte 5: malformed payload`},
		{"non-minimal time", KindDeleteKeys, []byte{magic, 1, codeDeleteKeys, 0, 0x80, 0x00, 1, 1, 'a'}, ErrMalformed,
			`decode invalidate:keys payload: enqueued-at: varint not in shortest form at byte 4: malformed payload`},
		{"trailing bytes", KindDeleteKeys, append(header(codeDeleteKeys), 1, 1, 'a', 'x', 'y'), ErrMalformed,
			`decode invalidate:keys payload: 2 trailing bytes after the last field: malformed payload`},
		{"bad target", KindDeleteKeys, []byte{magic, 1, codeDeleteKeys, 2, 'a', ' ', 0, 1, 1, 'a'}, ErrInvalid,
			`decode invalidate:keys payload: target name "a ": want letters, digits, '_', '.' and '-' only: invalid task`},
		{"target too long", KindDeleteKeys, append([]byte{magic, 1, codeDeleteKeys, 0x81, 0x01}, strings.Repeat("t", 129)...), ErrInvalid,
			`decode invalidate:keys payload: target: length 129 exceeds the limit of 128 bytes: invalid task`},
		{"empty family", KindDeleteFamily, append(header(codeDeleteFamily), 0, 0), ErrInvalid,
			`decode invalidate:family payload: empty family name: invalid task`},
		{"huge param count", KindDeleteFamily, uv(append(header(codeDeleteFamily), 1, 'f'), 1<<60), ErrMalformed,
			`decode invalidate:family payload: param count 1152921504606846976 exceeds what the remaining 0 bytes can hold: malformed payload`},
		{"param count vs pairs", KindDeleteFamily, append(header(codeDeleteFamily), 1, 'f', 2, 1, 'a', 1), ErrMalformed,
			`decode invalidate:family payload: param count 2 exceeds what the remaining 3 bytes can hold: malformed payload`},
		{"params unsorted", KindDeleteFamily, append(header(codeDeleteFamily), 1, 'f', 2, 1, 'b', 1, '1', 1, 'a', 1, '2'), ErrMalformed,
			`decode invalidate:family payload: param 1: name "a" does not sort after "b": malformed payload`},
		{"params duplicate", KindBumpVersion, append(header(codeBumpVersion), 1, 'f', 2, 1, 'a', 1, '1', 1, 'a', 1, '2'), ErrMalformed,
			`decode invalidate:version payload: param 1: name "a" does not sort after "a": malformed payload`},
		{"param value past the end", KindBumpVersion, append(header(codeBumpVersion), 1, 'f', 1, 1, 'a', 5, 'x'), ErrMalformed,
			`decode invalidate:version payload: param value 0: length 5 exceeds remaining 1 bytes: malformed payload`},
		{"empty param value", KindBumpVersion, append(header(codeBumpVersion), 1, 'f', 1, 1, 'a', 0), ErrInvalid,
			`decode invalidate:version payload: family "f": parameter "a": empty value (leave the parameter out to match any value): invalid task`},
		{"empty param name", KindBumpVersion, append(header(codeBumpVersion), 1, 'f', 1, 0, 1, 'x'), ErrInvalid,
			`decode invalidate:version payload: family "f": empty parameter name: invalid task`},
		{"bad param name", KindDeleteFamily, append(header(codeDeleteFamily), 1, 'f', 1, 2, 'a', '*', 1, 'x'), ErrInvalid,
			`decode invalidate:family payload: family "f": parameter name "a*": want letters, digits and '_' only: invalid task`},
		{"payload too large", KindDeleteKeys, make([]byte, MaxPayloadBytes+1), ErrInvalid,
			`decode invalidate:keys payload: 1048577 bytes exceed MaxPayloadBytes (1048576): invalid task`},
	}
	for _, c := range cases {
		got, err := Unmarshal(c.kind, c.payload)
		require.Nil(t, got, c.name)
		require.ErrorIs(t, err, c.is, c.name)
		require.EqualError(t, err, c.msg, c.name)
		for _, other := range []error{ErrUnknownKind, ErrMalformed, ErrNewerFormat, ErrInvalid} {
			if other != c.is {
				require.False(t, errors.Is(err, other), "%s: %v must not also be %v", c.name, err, other)
			}
		}
	}
}

func TestUnmarshalDoesNotAliasPayload(t *testing.T) {
	t.Parallel()

	payload, err := Marshal(DeleteKeys{Keys: []string{"user:1"}})
	require.NoError(t, err)
	got, err := Unmarshal(KindDeleteKeys, payload)
	require.NoError(t, err)
	for i := range payload {
		payload[i] = 'X' // asynq may reuse its buffers
	}
	require.Equal(t, "user:1", got.(DeleteKeys).Keys[0])
}

func TestKinds(t *testing.T) {
	t.Parallel()

	require.Equal(t, []string{"invalidate:keys", "invalidate:family", "invalidate:version", "invalidate:event"}, Kinds())
	for _, k := range Kinds() {
		require.True(t, IsKind(k))
	}
	for _, k := range []string{"", "invalidate", "invalidate:events", "Invalidate:keys", "invalidate:keys "} {
		require.False(t, IsKind(k), k)
	}
	require.Equal(t, KindDeleteKeys, DeleteKeys{}.Kind())
	require.Equal(t, KindDeleteFamily, DeleteFamily{}.Kind())
	require.Equal(t, KindBumpVersion, BumpVersion{}.Kind())
	require.Equal(t, KindEvent, Event{}.Kind())

	// Every kind decodes its own payloads and refuses the others'.
	for _, task := range validTasks() {
		payload, err := Marshal(task)
		require.NoError(t, err)
		for _, k := range Kinds() {
			_, err := Unmarshal(k, payload)
			if k == task.Kind() {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrMalformed)
			}
		}
	}
}
