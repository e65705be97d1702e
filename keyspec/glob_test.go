package keyspec

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// redisMatch reports whether key matches the glob pattern exactly as Redis
// matches SCAN MATCH and KEYS patterns. It is a line-by-line port of
// stringmatchlen_impl in Redis's src/util.c (case-sensitive): the tests use
// it as the oracle that proves escaped patterns never widen.
func redisMatch(pattern, key string) bool {
	skipLonger := false
	return stringMatch(pattern, key, &skipLonger, 0)
}

func stringMatch(pat, str string, skipLonger *bool, nesting int) bool {
	// Protection against abusive patterns, as in Redis.
	if nesting > 1000 {
		return false
	}
	// C strings end in NUL, and Redis reads one byte past the end in places.
	pc := func(i int) byte {
		if i < len(pat) {
			return pat[i]
		}
		return 0
	}
	p, s := 0, 0
	for p < len(pat) && s < len(str) {
		switch pat[p] {
		case '*':
			for p < len(pat) && pc(p+1) == '*' {
				p++
			}
			if len(pat)-p == 1 {
				return true
			}
			for s < len(str) {
				if stringMatch(pat[p+1:], str[s:], skipLonger, nesting+1) {
					return true
				}
				if *skipLonger {
					return false
				}
				s++
			}
			// No match of the rest anywhere in the rest of the string, so a
			// longer match of an earlier '*' cannot help either.
			*skipLonger = true
			return false
		case '?':
			s++
		case '[':
			p++
			not := pc(p) == '^'
			if not {
				p++
			}
			match := false
			for {
				if pc(p) == '\\' && len(pat)-p >= 2 {
					p++
					if pat[p] == str[s] {
						match = true
					}
				} else if pc(p) == ']' {
					break
				} else if p >= len(pat) {
					p-- // the p++ after the switch brings p to the end
					break
				} else if len(pat)-p >= 3 && pat[p+1] == '-' {
					// C's char is signed on the platforms Redis runs on.
					start, end, c := int(int8(pat[p])), int(int8(pat[p+2])), int(int8(str[s]))
					if start > end {
						start, end = end, start
					}
					p += 2
					if c >= start && c <= end {
						match = true
					}
				} else if pat[p] == str[s] {
					match = true
				}
				p++
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			s++
		case '\\':
			if len(pat)-p >= 2 {
				p++
			}
			if pat[p] != str[s] {
				return false
			}
			s++
		default:
			if pat[p] != str[s] {
				return false
			}
			s++
		}
		p++
		if s == len(str) {
			for pc(p) == '*' {
				p++
			}
			break
		}
	}
	return p == len(pat) && s == len(str)
}

// TestRedisMatch pins the oracle to Redis's documented glob behaviour, so a
// bug in the port cannot make the escaping tests pass vacuously.
func TestRedisMatch(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		pattern, key string
		want         bool
	}{
		{"h?llo", "hello", true},
		{"h?llo", "hllo", false},
		{"h*llo", "hllo", true},
		{"h*llo", "heeeello", true},
		{"h[ae]llo", "hallo", true},
		{"h[ae]llo", "hillo", false},
		{"h[^e]llo", "hallo", true},
		{"h[^e]llo", "hello", false},
		{"h[a-b]llo", "hbllo", true},
		{"h[a-b]llo", "hcllo", false},
		{"h[b-a]llo", "hallo", true}, // reversed range
		{`h\*llo`, "h*llo", true},
		{`h\*llo`, "hallo", false},
		{`h\?llo`, "hallo", false},
		{`h\[a]llo`, "h[a]llo", true},
		{`h\[a]llo`, "hallo", false},
		{`a\\b`, `a\b`, true},
		{`a\\b`, `a\\b`, false},
		{`h[\]]llo`, "h]llo", true},
		{"a*", "a", true},
		{"*", "", false}, // Redis: the loop never runs on an empty key
		{"", "", true},
		{"abc", "abcd", false},
		{"abc*", "abcd", true},
		{"*b*", "abc", true},
		{"a**c", "abc", true},
		{"a[bc", "ab", true}, // unterminated class ends at the pattern end
		{`trailing\`, `trailing\`, true},
		{"user:*:profile", "user:42:profile", true},
		{"user:*:profile", "user:42:settings", false},
		{"a\x00b", "a\x00b", true},
		{"a\xffb", "a\xffb", true},
		{"a?b", "a\xffb", true},
	} {
		require.Equal(t, tc.want, redisMatch(tc.pattern, tc.key), "pattern %q key %q", tc.pattern, tc.key)
	}
}
