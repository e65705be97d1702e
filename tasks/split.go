package tasks

import (
	"encoding/binary"
	"fmt"
)

// keysHeaderMax is the largest possible DeleteKeys payload before the first
// key: header, the longest target (a 2-byte length), the widest time and the
// key count (2 bytes up to 16383). TestKeysHeaderMax checks the widths.
const keysHeaderMax = headerLen + 2 + MaxTargetBytes + binary.MaxVarintLen64 + 2

// SplitKeys chunks keys into lists that each make a valid DeleteKeys task: at
// most MaxKeysPerTask keys and an encoded payload within MaxPayloadBytes,
// whatever Target and EnqueuedAt the caller then sets. Keys keep their order
// and duplicates are kept. The chunks share the backing array of keys, with
// capacities capped so appending to one chunk never overwrites the next.
//
// It returns an error wrapping ErrInvalid for an empty list, an empty key or a
// key longer than MaxKeyBytes; such a key can never be sent, and dropping it
// silently would leave stale data.
func SplitKeys(keys []string) ([][]string, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("split keys: no keys: %w", ErrInvalid)
	}
	const budget = MaxPayloadBytes - keysHeaderMax
	var chunks [][]string
	start, size := 0, 0
	for i, k := range keys {
		if err := validateKey(k); err != nil {
			return nil, fmt.Errorf("split keys: key %d: %w", i, err)
		}
		n := stringLen(k)
		if i-start == MaxKeysPerTask || size+n > budget {
			chunks = append(chunks, keys[start:i:i])
			start, size = i, 0
		}
		size += n
	}
	return append(chunks, keys[start:len(keys):len(keys)]), nil
}
