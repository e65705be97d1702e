package cacheaside

// StoredKind says what a string cacheaside wrote holds.
type StoredKind uint8

const (
	// StoredValue is a value a loader returned.
	StoredValue StoredKind = StoredKind(kindValue)
	// StoredNotFound is a negative entry: the loader returned ErrNotFound.
	StoredNotFound StoredKind = StoredKind(kindNotFound)
	// StoredLease is a lease marker: a reader is loading the key.
	StoredLease StoredKind = StoredKind(kindLease)
	// StoredFailure is a failure marker: a load of the key failed a moment ago.
	StoredFailure StoredKind = StoredKind(kindFailure)
)

// DecodeStored parses a string read from a key that cacheaside writes, for
// tools that read the cache directly, such as audits. For StoredValue it
// returns the loader's bytes (aliasing b); the other kinds are not data.
// Bytes that cacheaside did not write fail with ErrForeignValue.
func DecodeStored(b []byte) (StoredKind, []byte, error) {
	e, err := decode(b)
	if err != nil {
		return 0, nil, err
	}
	if e.kind != kindValue {
		return StoredKind(e.kind), nil, nil
	}
	return StoredValue, e.payload, nil
}

// EncodeValue returns the stored form of a loader's value v, as Get writes
// it: for tests and tools that plant cache entries.
func EncodeValue(v []byte) []byte { return encodeValue(v) }
