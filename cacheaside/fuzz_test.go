package cacheaside

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecode: strings read from Redis are outside input. decode never
// panics, accepts exactly the tagged forms, and a value's payload is the
// stored bytes behind the tag.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"", "v", "vhello", "n", "nx", "l", newLeaseMarker(), "hello", "\x00", "vl" + newLeaseMarker()} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decode(b)
		if err != nil {
			require.ErrorIs(t, err, ErrForeignValue)
			require.Zero(t, e.kind)
			return
		}
		switch e.kind {
		case kindValue:
			require.Equal(t, b, encodeValue(e.payload), "the payload re-encodes to the input")
		case kindNotFound:
			require.Equal(t, encodedNotFound, string(b))
		case kindLease:
			require.Equal(t, byte(tagLease), b[0])
			require.Greater(t, len(b), 1, "a marker has a token")
		default:
			t.Fatalf("decode(%q) gave kind %d", b, e.kind)
		}
	})
}

func TestEncodeValueNeverLooksLikeMarker(t *testing.T) {
	t.Parallel()
	m := newLeaseMarker()
	for _, v := range [][]byte{{}, []byte(m), []byte("n"), []byte("l")} {
		e, err := decode(encodeValue(v))
		require.NoError(t, err)
		require.Equal(t, kindValue, e.kind, "value %q", v)
		require.Equal(t, v, e.payload)
	}
	e, err := decode([]byte(m))
	require.NoError(t, err)
	require.Equal(t, kindLease, e.kind)
	require.NotEqual(t, m, newLeaseMarker(), "markers are unique")
}
