package cacheaside

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
)

// The on-Redis format. Every string cacheaside writes starts with one tag
// byte that says what the rest is:
//
//	'v' + payload   a value the loader returned; the payload is its bytes, verbatim
//	'n'             a negative entry: the loader returned ErrNotFound
//	'l' + token     a lease marker: a reader is loading this key; the token
//	                (26 base32 characters) tells the readers apart
//	'f' + text      a failure marker: a reader's load of this key failed a
//	                moment ago (Config.FailureTTL); the text (1 to 200
//	                printable ASCII bytes) says what kind of error it was
//
// Because a user value is always stored behind 'v', no user value can ever
// look like a marker, even one whose own bytes start with 'l'. The compare
// in the store script is on the whole string, so one reader's marker never
// matches another's either. A string with any other first byte (or an empty
// one) was not written by cacheaside: reads fail with ErrForeignValue rather
// than guess.
const (
	tagValue    = 'v'
	tagNotFound = 'n'
	tagLease    = 'l'
	tagFailure  = 'f'
)

// maxFailureText bounds the text of a failure marker.
const maxFailureText = 200

// kind is what a stored string holds.
type kind uint8

const (
	kindValue kind = iota + 1
	kindNotFound
	kindLease
	kindFailure
)

// entry is a decoded stored string.
type entry struct {
	kind    kind
	payload []byte // the user value, for kindValue; the text, for kindFailure
}

// encodeValue frames a user value for storage.
func encodeValue(v []byte) []byte {
	b := make([]byte, 1+len(v))
	b[0] = tagValue
	copy(b[1:], v)
	return b
}

// encodedNotFound is the stored form of a negative entry.
const encodedNotFound = string(rune(tagNotFound))

// encodeFailure returns the failure marker a failed load leaves for the
// other readers. It does not carry the error's text, which may hold
// anything (a DSN with its password, a row, a query): only the Go types in
// the error's chain, and whether it was a timeout, e.g.
// "timeout; *pgconn.ConnectError; *net.OpError".
func encodeFailure(err error) string {
	var types []string
	seen := make(map[string]bool)
	var walk func(error)
	walk = func(e error) {
		for ; e != nil && len(types) < 16; e = errors.Unwrap(e) {
			switch t := fmt.Sprintf("%T", e); t {
			case "*fmt.wrapError", "*fmt.wrapErrors", "*errors.joinError", "*errors.errorString":
				// A wrapper, or errors.New: its type says nothing.
			default:
				if !seen[t] {
					seen[t] = true
					types = append(types, t)
				}
			}
			if m, ok := e.(interface{ Unwrap() []error }); ok {
				for _, e := range m.Unwrap() {
					walk(e)
				}
				return
			}
		}
	}
	walk(err)
	var notes []string
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		notes = append(notes, "timeout")
	}
	if errors.Is(err, ErrCodec) {
		notes = append(notes, "codec")
	}
	if len(types) == 0 {
		types = append(types, "plain error")
	}
	text := strings.Join(append(notes, types...), "; ")
	b := []byte(text)
	for i, c := range b {
		if c < ' ' || c > '~' {
			b[i] = '?'
		}
	}
	if len(b) > maxFailureText {
		b = append(b[:maxFailureText-3], "..."...)
	}
	return string(rune(tagFailure)) + string(b)
}

// newLeaseMarker returns a marker no other reader holds: 128 random bits.
func newLeaseMarker() string {
	return string(rune(tagLease)) + rand.Text()
}

// decode parses a string read from Redis. The bytes come from outside (any
// client may have written the key), so anything unexpected is an error, never
// a panic. The payload aliases b.
func decode(b []byte) (entry, error) {
	if len(b) == 0 {
		return entry{}, fmt.Errorf("%w: empty string", ErrForeignValue)
	}
	switch b[0] {
	case tagValue:
		return entry{kind: kindValue, payload: b[1:]}, nil
	case tagNotFound:
		if len(b) != 1 {
			return entry{}, fmt.Errorf("%w: negative entry with %d trailing bytes", ErrForeignValue, len(b)-1)
		}
		return entry{kind: kindNotFound}, nil
	case tagLease:
		if len(b) == 1 {
			return entry{}, fmt.Errorf("%w: lease marker without a token", ErrForeignValue)
		}
		return entry{kind: kindLease}, nil
	case tagFailure:
		text := b[1:]
		if len(text) == 0 || len(text) > maxFailureText {
			return entry{}, fmt.Errorf("%w: failure marker with %d bytes of text, want 1 to %d", ErrForeignValue, len(text), maxFailureText)
		}
		for _, c := range text {
			if c < ' ' || c > '~' {
				return entry{}, fmt.Errorf("%w: failure marker with byte %q in its text", ErrForeignValue, c)
			}
		}
		return entry{kind: kindFailure, payload: text}, nil
	default:
		return entry{}, fmt.Errorf("%w: first byte %q is no cacheaside tag", ErrForeignValue, b[0])
	}
}
