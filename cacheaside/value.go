package cacheaside

import (
	"crypto/rand"
	"fmt"
)

// The on-Redis format. Every string cacheaside writes starts with one tag
// byte that says what the rest is:
//
//	'v' + payload   a value the loader returned; the payload is its bytes, verbatim
//	'n'             a negative entry: the loader returned ErrNotFound
//	'l' + token     a lease marker: a reader is loading this key; the token
//	                (26 base32 characters) tells the readers apart
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
)

// kind is what a stored string holds.
type kind uint8

const (
	kindValue kind = iota + 1
	kindNotFound
	kindLease
)

// entry is a decoded stored string.
type entry struct {
	kind    kind
	payload []byte // the user value, for kindValue
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
	default:
		return entry{}, fmt.Errorf("%w: first byte %q is no cacheaside tag", ErrForeignValue, b[0])
	}
}
