package tasks

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Wire format.
//
// Queued tasks outlive the build that wrote them, so this layout is a
// contract: change it only by raising FormatVersion, and keep decoding every
// older version. Version 1, byte by byte:
//
//	offset  field
//	0       magic 0xC1. Never valid in UTF-8, so a JSON or text payload
//	        fails at the first byte.
//	1       format version, 1 to 255; this build writes FormatVersion.
//	2       kind code: 1 invalidate:keys, 2 invalidate:family,
//	        3 invalidate:version, 4 invalidate:event. Must match the asynq
//	        task type, so a payload handed to the wrong handler is refused,
//	        not misread. (Code 4 came later within version 1: a build
//	        without it refuses such a task as an unknown kind, which is why
//	        workers are upgraded before producers.)
//	3       target       string
//	        enqueued-at  varint: Unix nanoseconds, zigzag-encoded; 0 is the
//	                     zero time (the Unix epoch itself decodes as zero)
//	then, for invalidate:keys:
//	        key count    uvarint, 1 to MaxKeysPerTask
//	        keys         count × string
//	for invalidate:family, invalidate:version and invalidate:event:
//	        family       string (the event name for invalidate:event)
//	        param count  uvarint
//	        params       count × (name string, value string), names in
//	                     strictly ascending byte order (an event's
//	                     attributes)
//
// A string is a uvarint byte length followed by that many raw bytes, with no
// character encoding: keys are bytes. Varints are encoding/binary's and must
// use their shortest form. Nothing may follow the last field. Together these
// rules give each task exactly one encoding, so re-encoding a decoded payload
// reproduces it byte for byte.
const (
	magic = 0xC1

	codeDeleteKeys   = 1
	codeDeleteFamily = 2
	codeBumpVersion  = 3
	codeEvent        = 4

	// headerLen covers magic, version and kind code.
	headerLen = 3
)

// Marshal validates t and encodes it in the current format. Pointers to the
// task types are accepted too. The payload is the asynq task payload; the
// asynq task type is t.Kind().
func Marshal(t Task) ([]byte, error) {
	switch v := t.(type) {
	case DeleteKeys:
		return marshalKeys(v)
	case *DeleteKeys:
		if v != nil {
			return marshalKeys(*v)
		}
	case DeleteFamily:
		return marshalFamily(KindDeleteFamily, codeDeleteFamily, v.Family, v.Params, v.Target, v.EnqueuedAt)
	case *DeleteFamily:
		if v != nil {
			return marshalFamily(KindDeleteFamily, codeDeleteFamily, v.Family, v.Params, v.Target, v.EnqueuedAt)
		}
	case BumpVersion:
		return marshalFamily(KindBumpVersion, codeBumpVersion, v.Family, v.Params, v.Target, v.EnqueuedAt)
	case *BumpVersion:
		if v != nil {
			return marshalFamily(KindBumpVersion, codeBumpVersion, v.Family, v.Params, v.Target, v.EnqueuedAt)
		}
	case Event:
		return marshalEvent(v)
	case *Event:
		if v != nil {
			return marshalEvent(*v)
		}
	case nil:
		return nil, fmt.Errorf("encode task: nil task: %w", ErrInvalid)
	default:
		return nil, fmt.Errorf("encode %s payload: type %T is not one of this package's tasks: %w", t.Kind(), t, ErrUnknownKind)
	}
	// Only a nil pointer to one of the task types gets here; calling its
	// value-receiver Kind method would panic.
	return nil, fmt.Errorf("encode task: nil %T: %w", t, ErrInvalid)
}

func marshalKeys(t DeleteKeys) ([]byte, error) {
	if err := t.validate(); err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", KindDeleteKeys, err)
	}
	b := make([]byte, 0, t.encodedLen())
	b = appendHeader(b, codeDeleteKeys, t.Target, t.EnqueuedAt)
	b = binary.AppendUvarint(b, uint64(len(t.Keys)))
	for _, k := range t.Keys {
		b = appendString(b, k)
	}
	return b, nil
}

func marshalFamily(kind string, code byte, family string, params map[string]string, target string, at time.Time) ([]byte, error) {
	if err := validateFamily(family, params, target, at); err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", kind, err)
	}
	b := make([]byte, 0, familyEncodedLen(family, params, target, at))
	b = appendHeader(b, code, target, at)
	b = appendString(b, family)
	b = binary.AppendUvarint(b, uint64(len(params)))
	for _, name := range sortedNames(params) {
		b = appendString(b, name)
		b = appendString(b, params[name])
	}
	return b, nil
}

func marshalEvent(t Event) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", KindEvent, err)
	}
	// The layout is the family one; validation differs only in naming.
	return marshalFamily(KindEvent, codeEvent, t.Name, t.Attrs, t.Target, t.EnqueuedAt)
}

func appendHeader(b []byte, code byte, target string, at time.Time) []byte {
	b = append(b, magic, FormatVersion, code)
	b = appendString(b, target)
	return binary.AppendVarint(b, unixNano(at))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// unixNano maps the zero time to 0; time.Time.UnixNano leaves it undefined.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func (t DeleteKeys) encodedLen() int {
	n := commonEncodedLen(t.Target, t.EnqueuedAt) + uvarintLen(uint64(len(t.Keys)))
	for _, k := range t.Keys {
		n += stringLen(k)
	}
	return n
}

func familyEncodedLen(family string, params map[string]string, target string, at time.Time) int {
	n := commonEncodedLen(target, at) + stringLen(family) + uvarintLen(uint64(len(params)))
	for name, value := range params {
		n += stringLen(name) + stringLen(value)
	}
	return n
}

func commonEncodedLen(target string, at time.Time) int {
	return headerLen + stringLen(target) + varintLen(unixNano(at))
}

func stringLen(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintLen(x int64) int { return uvarintLen(zigzag(x)) }

func zigzag(x int64) uint64 { return uint64(x<<1) ^ uint64(x>>63) }

// Unmarshal decodes a payload of the given kind and validates the task. It
// returns a value type (DeleteKeys, not *DeleteKeys). Errors wrap
// ErrUnknownKind, ErrMalformed, ErrNewerFormat or ErrInvalid.
func Unmarshal(kind string, payload []byte) (Task, error) {
	t, err := decode(kind, payload)
	if err != nil {
		return nil, fmt.Errorf("decode %s payload: %w", kind, err)
	}
	return t, nil
}

// decode is Unmarshal with errors that do not repeat the kind.
func decode(kind string, payload []byte) (Task, error) {
	var code byte
	switch kind {
	case KindDeleteKeys:
		code = codeDeleteKeys
	case KindDeleteFamily:
		code = codeDeleteFamily
	case KindBumpVersion:
		code = codeBumpVersion
	case KindEvent:
		code = codeEvent
	default:
		return nil, ErrUnknownKind
	}
	if len(payload) > MaxPayloadBytes {
		return nil, fmt.Errorf("%d bytes exceed MaxPayloadBytes (%d): %w", len(payload), MaxPayloadBytes, ErrInvalid)
	}
	d := decoder{buf: payload}
	target, at, err := d.header(code)
	if err != nil {
		return nil, err
	}
	switch code {
	case codeDeleteKeys:
		keys, err := d.keys()
		if err != nil {
			return nil, err
		}
		if err := d.end(); err != nil {
			return nil, err
		}
		t := DeleteKeys{Keys: keys, Target: target, EnqueuedAt: at}
		if err := t.validate(); err != nil {
			return nil, err
		}
		return t, nil
	default:
		family, params, err := d.family()
		if err != nil {
			return nil, err
		}
		if err := d.end(); err != nil {
			return nil, err
		}
		what := "family name"
		if code == codeEvent {
			what = "event name"
		}
		if err := validateNamed(what, family, params, target, at); err != nil {
			return nil, err
		}
		switch code {
		case codeEvent:
			return Event{Name: family, Attrs: params, Target: target, EnqueuedAt: at}, nil
		case codeDeleteFamily:
			return DeleteFamily{Family: family, Params: params, Target: target, EnqueuedAt: at}, nil
		}
		return BumpVersion{Family: family, Params: params, Target: target, EnqueuedAt: at}, nil
	}
}

// decoder reads a payload front to back. Every length and count is checked
// against the bytes left before anything is allocated, so a corrupted or
// hostile count (2^60 keys) fails fast instead of allocating.
type decoder struct {
	buf []byte
	off int
}

func (d *decoder) remaining() int { return len(d.buf) - d.off }

func (d *decoder) header(code byte) (string, time.Time, error) {
	if len(d.buf) < headerLen {
		return "", time.Time{}, fmt.Errorf("%d bytes is shorter than the %d-byte header: %w", len(d.buf), headerLen, ErrMalformed)
	}
	if d.buf[0] != magic {
		return "", time.Time{}, fmt.Errorf("bad magic byte 0x%02x, want 0x%02x (not written by this package): %w", d.buf[0], magic, ErrMalformed)
	}
	// The version is checked before the kind code: a newer format may lay
	// out everything after the version byte differently.
	switch v := d.buf[1]; {
	case v == 0:
		return "", time.Time{}, fmt.Errorf("format version 0: %w", ErrMalformed)
	case v > FormatVersion:
		return "", time.Time{}, fmt.Errorf("format version %d, this build reads up to %d: %w", v, FormatVersion, ErrNewerFormat)
	}
	if c := d.buf[2]; c != code {
		return "", time.Time{}, fmt.Errorf("payload is for %s (kind code %d), not this kind: %w", kindOfCode(c), c, ErrMalformed)
	}
	d.off = headerLen
	target, err := d.string("target", -1, MaxTargetBytes)
	if err != nil {
		return "", time.Time{}, err
	}
	at, err := d.time()
	if err != nil {
		return "", time.Time{}, err
	}
	return target, at, nil
}

func (d *decoder) keys() ([]string, error) {
	// Each key takes at least one byte, its length.
	n, err := d.count("key count", 1, MaxKeysPerTask)
	if err != nil {
		return nil, err
	}
	keys := make([]string, n)
	for i := range keys {
		if keys[i], err = d.string("key", i, MaxKeyBytes); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

func (d *decoder) family() (string, map[string]string, error) {
	family, err := d.string("family name", -1, MaxKeyBytes)
	if err != nil {
		return "", nil, err
	}
	// Each parameter takes at least two bytes, the lengths of name and value.
	n, err := d.count("param count", 2, 0)
	if err != nil {
		return "", nil, err
	}
	if n == 0 {
		return family, nil, nil
	}
	params := make(map[string]string, n)
	prev := ""
	for i := range n {
		name, err := d.string("param name", i, MaxKeyBytes)
		if err != nil {
			return "", nil, err
		}
		// Strictly ascending names make the encoding unique and rule out
		// duplicates, which a map would silently collapse.
		if i > 0 && name <= prev {
			return "", nil, fmt.Errorf("param %d: name %s does not sort after %s: %w", i, quote(name), quote(prev), ErrMalformed)
		}
		value, err := d.string("param value", i, MaxKeyBytes)
		if err != nil {
			return "", nil, err
		}
		params[name] = value
		prev = name
	}
	return family, params, nil
}

// count reads an element count. Each element takes at least minBytes, which
// bounds the count by the bytes left; limit > 0 bounds it further.
func (d *decoder) count(what string, minBytes, limit int) (int, error) {
	n, err := d.uvarint(what, -1)
	if err != nil {
		return 0, err
	}
	if n > uint64(d.remaining()/minBytes) {
		return 0, fmt.Errorf("%s %d exceeds what the remaining %d bytes can hold: %w", what, n, d.remaining(), ErrMalformed)
	}
	if limit > 0 && n > uint64(limit) {
		return 0, fmt.Errorf("%s %d exceeds the limit of %d: %w", what, n, limit, ErrInvalid)
	}
	return int(n), nil
}

// string reads a length-prefixed string of at most limit bytes; idx >= 0
// numbers the element in error messages.
func (d *decoder) string(what string, idx, limit int) (string, error) {
	n, err := d.uvarint(what, idx)
	if err != nil {
		return "", err
	}
	if n > uint64(d.remaining()) {
		return "", fmt.Errorf("%s: length %d exceeds remaining %d bytes: %w", label(what, idx), n, d.remaining(), ErrMalformed)
	}
	if n > uint64(limit) {
		return "", fmt.Errorf("%s: length %d exceeds the limit of %d bytes: %w", label(what, idx), n, limit, ErrInvalid)
	}
	s := string(d.buf[d.off : d.off+int(n)])
	d.off += int(n)
	return s, nil
}

func (d *decoder) time() (time.Time, error) {
	u, err := d.uvarint("enqueued-at", -1)
	if err != nil {
		return time.Time{}, err
	}
	nanos := int64(u>>1) ^ -int64(u&1) // undo zigzag
	if nanos == 0 {
		return time.Time{}, nil
	}
	return time.Unix(0, nanos).UTC(), nil
}

// uvarint reads a uvarint in its shortest form.
func (d *decoder) uvarint(what string, idx int) (uint64, error) {
	x, n := binary.Uvarint(d.buf[d.off:])
	switch {
	case n == 0:
		return 0, fmt.Errorf("%s: truncated at byte %d: %w", label(what, idx), d.off, ErrMalformed)
	case n < 0:
		return 0, fmt.Errorf("%s: varint overflows 64 bits at byte %d: %w", label(what, idx), d.off, ErrMalformed)
	case n > 1 && d.buf[d.off+n-1] == 0:
		return 0, fmt.Errorf("%s: varint not in shortest form at byte %d: %w", label(what, idx), d.off, ErrMalformed)
	}
	d.off += n
	return x, nil
}

func (d *decoder) end() error {
	if r := d.remaining(); r > 0 {
		return fmt.Errorf("%d trailing bytes after the last field: %w", r, ErrMalformed)
	}
	return nil
}

// label names a field for an error: "key 3", "target".
func label(what string, idx int) string {
	if idx < 0 {
		return what
	}
	return fmt.Sprintf("%s %d", what, idx)
}

func kindOfCode(c byte) string {
	switch c {
	case codeDeleteKeys:
		return KindDeleteKeys
	case codeDeleteFamily:
		return KindDeleteFamily
	case codeBumpVersion:
		return KindBumpVersion
	case codeEvent:
		return KindEvent
	}
	return "an unknown kind"
}
