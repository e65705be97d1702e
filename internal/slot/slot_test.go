package slot

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCRC16(t *testing.T) {
	t.Parallel()

	// The check value from the Redis Cluster specification (Appendix A).
	require.Equal(t, uint16(0x31C3), crc16("123456789"))
	require.Equal(t, uint16(0), crc16(""))
}

func TestOf(t *testing.T) {
	t.Parallel()

	// Every value below was read from CLUSTER KEYSLOT on redis-server 7 in
	// cluster mode, not computed by this package.
	cases := []struct {
		key  string
		want int
	}{
		{"foo", 12182},
		{"bar", 5061},
		{"somekey", 11058},
		{"foo{hash_tag}", 2515},
		{"123456789", 12739}, // 0x31C3
		{"", 0},
		{"{user1000}.following", 3443},
		{"user1000", 3443},
		{"foo{}{bar}", 8363},
		{"foo{{bar}}zap", 4015},
		{"foo{bar}{zap}", 5061},
		{"}{x}", 16287},
		{"{}", 15257},
		{"session:9", 9684},
		{"{user:1}:profile", 10778},
		{"a{\xff\x00}b", 1023},
	}
	for _, c := range cases {
		require.Equal(t, c.want, Of(c.key), "slot of %q", c.key)
	}
}

func TestOfHashTags(t *testing.T) {
	t.Parallel()

	cases := []struct {
		key    string
		hashes string // the part of the key Redis hashes
	}{
		{"{user1000}.following", "user1000"},
		{"{user1000}.followers", "user1000"},
		{"foo{}{bar}", "foo{}{bar}"}, // empty first tag: the whole key
		{"foo{{bar}}zap", "{bar"},    // from the first '{' to the first '}'
		{"foo{bar}{zap}", "bar"},     // only the first tag counts
		{"foo{bar", "foo{bar"},       // unclosed: the whole key
		{"foo}bar{", "foo}bar{"},     // '}' before '{' is no tag
		{"}{x}", "x"},                // a leading '}' is ignored
		{"{}", "{}"},                 // nothing inside: the whole key
		{"a{\xff\x00}b", "\xff\x00"}, // tags are bytes
	}
	for _, c := range cases {
		require.Equal(t, c.hashes, hashTag(c.key), "hash tag of %q", c.key)
		require.Equal(t, int(crc16(c.hashes)%Count), Of(c.key), "slot of %q", c.key)
	}

	require.Equal(t, Of("{user1000}.following"), Of("{user1000}.followers"))
	require.Equal(t, Of("user1000"), Of("{user1000}.following"))
	require.NotEqual(t, Of("foo{}{bar}"), Of("bar"), "an empty first tag must not fall through to the second")
}

func TestOfRange(t *testing.T) {
	t.Parallel()

	seen := make(map[int]bool)
	for i := range 20000 {
		s := Of(string(rune('a'+i%26)) + string(rune(i)))
		require.GreaterOrEqual(t, s, 0)
		require.Less(t, s, Count)
		seen[s] = true
	}
	// A CRC spreads keys: 20k keys should touch about 11.5k of the 16384
	// slots (1-e^-1.22 of them); a stuck or narrow hash touches far fewer.
	require.Greater(t, len(seen), Count/2)
}

func BenchmarkOf(b *testing.B) {
	key := "{user:123456}:profile:v1746000000000"
	for b.Loop() {
		_ = Of(key)
	}
}

func TestGroupKeepsEachSlotTogetherInOrder(t *testing.T) {
	keys := []string{"{a}:1", "{b}:1", "{a}:2", "x", "{b}:2", "{a}:3"}
	groups := Group(keys, func(k string) string { return k })
	seen := 0
	last := -1
	for _, g := range groups {
		s := Of(g[0])
		if s <= last {
			t.Fatalf("groups not in slot order: %v", groups)
		}
		last = s
		for _, k := range g {
			if Of(k) != s {
				t.Fatalf("group %v mixes slots", g)
			}
		}
		seen += len(g)
	}
	if seen != len(keys) {
		t.Fatalf("grouped %d of %d keys: %v", seen, len(keys), groups)
	}
	for _, g := range groups {
		if g[0] == "{a}:1" && (len(g) != 3 || g[1] != "{a}:2" || g[2] != "{a}:3") {
			t.Fatalf("order within a slot not kept: %v", g)
		}
	}
}
