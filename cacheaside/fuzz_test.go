package cacheaside

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecode: strings read from Redis are outside input. decode never
// panics, accepts exactly the tagged forms, and a value's payload is the
// stored bytes behind the tag.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"", "v", "vhello", "n", "nx", "l", newLeaseMarker(), "hello", "\x00", "vl" + newLeaseMarker(),
		"f", "fx", "f\x00", "f\x7f", encodeFailure(errors.New("db down")), "f" + strings.Repeat("x", maxFailureText),
		"f" + strings.Repeat("x", maxFailureText+1)} {
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
		case kindFailure:
			require.Equal(t, byte(tagFailure), b[0])
			require.Equal(t, b[1:], e.payload, "the text is the bytes behind the tag")
			require.True(t, len(e.payload) >= 1 && len(e.payload) <= maxFailureText, "text of %d bytes", len(e.payload))
			for _, c := range e.payload {
				require.True(t, c >= ' ' && c <= '~', "byte %q in the text", c)
			}
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

type secretError struct{}

func (secretError) Error() string { return "dial postgres://app:hunter2@db" }

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout hunter2" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var _ net.Error = timeoutError{}

// Whatever the loader's error, its failure marker decodes as one, tells
// the kind of error and never its text.
func TestEncodeFailure(t *testing.T) {
	t.Parallel()
	long := errors.New("hunter2")
	for range 100 {
		long = fmt.Errorf("layer: %w", &os.PathError{Op: "open", Path: "hunter2", Err: long})
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errors.New("hunter2"), "plain error"},
		{fmt.Errorf("query: %w", secretError{}), "cacheaside.secretError"},
		{errors.Join(secretError{}, errors.New("hunter2")), "cacheaside.secretError"},
		{fmt.Errorf("a: %w, b: %w", context.DeadlineExceeded, secretError{}), "timeout; context.deadlineExceededError; cacheaside.secretError"},
		{&net.OpError{Op: "dial", Err: timeoutError{}}, "timeout; *net.OpError; cacheaside.timeoutError"},
		{fmt.Errorf("%w: encode: %w", ErrCodec, secretError{}), "codec; cacheaside.secretError"},
		{long, "*fs.PathError"},
	} {
		m := encodeFailure(tc.err)
		e, err := decode([]byte(m))
		require.NoError(t, err, "%q", m)
		require.Equal(t, kindFailure, e.kind)
		require.Equal(t, tc.want, string(e.payload))
		require.NotContains(t, m, "hunter2")
	}
}
