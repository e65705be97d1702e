package slot

import (
	"maps"
	"slices"
)

// Count is the number of hash slots in a Redis Cluster.
const Count = 16384

// Of returns the Redis Cluster hash slot of key, in [0, Count).
//
// If the key holds a non-empty hash tag (the bytes between the first '{' and
// the first '}' after it), only the tag is hashed, so "{user1000}.following"
// and "{user1000}.followers" share a slot. "foo{}{bar}" has an empty first tag
// and hashes whole, as Redis does.
func Of(key string) int {
	return int(crc16(hashTag(key)) % Count)
}

// hashTag returns the part of key that Redis hashes: the hash tag when there
// is a non-empty one, the whole key otherwise.
func hashTag(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] != '{' {
			continue
		}
		for j := i + 1; j < len(key); j++ {
			if key[j] == '}' {
				if j == i+1 {
					return key // "{}" is no tag: hash the whole key
				}
				return key[i+1 : j]
			}
		}
		return key // '{' without a closing '}'
	}
	return key
}

// crc16 is CRC16/XMODEM (polynomial 0x1021, initial value 0, no reflection),
// the variant Redis Cluster uses. Computed bit by bit rather than with a
// 256-entry table: keys are short and the package keeps no mutable state.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// Group splits items into groups whose keys share a hash slot, in slot
// order, keeping the items' order within a group: a multi-key command
// (UNLINK) on Redis Cluster must stay inside one slot. It is the one place
// the worker's batches and the producer's inline deletes group keys.
func Group[T any](items []T, key func(T) string) [][]T {
	bySlot := make(map[int][]T)
	for _, it := range items {
		s := Of(key(it))
		bySlot[s] = append(bySlot[s], it)
	}
	groups := make([][]T, 0, len(bySlot))
	for _, s := range slices.Sorted(maps.Keys(bySlot)) {
		groups = append(groups, bySlot[s])
	}
	return groups
}
