package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// FuzzReadKeys feeds arbitrary standard input to the key reader, as text
// and as hex. The property: a key is never silently changed. Either the
// input is refused with a usage error, or every key is the exact bytes of
// one non-empty line (the line minus its "\n" or "\r\n", and minus a UTF-8
// BOM on the first), in order, one per line: for text the line itself,
// printable UTF-8; for hex the bytes the line's digits spell.
func FuzzReadKeys(f *testing.F) {
	for _, s := range []string{
		"k\r\n", "a\nb\r\nc", "\ufeffa\r\n\r\nb\n", "a\rb\r", "k\x00\n", "caf\xe9\n", "\xff\xfek\x00",
		" k\n", "k \n", "search:red shoes\n", "6b6579\r\n", "  6B \t\r\n", "6b6\n", "0x6b\n", "6b 65\n", "\r\n\n",
		strings.Repeat("6b", 30) + "\n6b\n", strings.Repeat("6B", 38) + "\r\n6b",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, stdin []byte, isHex bool) {
		keys, err := readKeysFrom(stdin, isHex)
		if err != nil {
			var ue *usageError
			require.True(t, errors.As(err, &ue), "not a usage error: %v", err)
			return
		}
		lines := oracleLines(stdin)
		require.Len(t, keys, len(lines), "one key per non-empty line")
		for i, line := range lines {
			if isHex {
				require.Equal(t, strings.ToLower(strings.Trim(line, " \t\r")), hex.EncodeToString([]byte(keys[i])), "line %q", line)
				continue
			}
			require.Equal(t, line, keys[i])
			require.True(t, utf8.ValidString(keys[i]))
			for _, c := range []byte(keys[i]) {
				require.False(t, c < 0x20 || c == 0x7f, "control byte 0x%02x accepted in text key %q", c, keys[i])
			}
		}
	})
}

// readKeysFrom is what enqueue keys --stdin [--hex] does with its input.
func readKeysFrom(stdin []byte, isHex bool) ([]string, error) {
	in, err := readLines(bytes.NewReader(stdin))
	if err != nil {
		return nil, err
	}
	if isHex {
		if err := refuseWrappedHex(in); err != nil {
			return nil, err
		}
	}
	return decodeKeys(in, isHex)
}

// oracleLines splits input the simplest way: at "\n", dropping one "\r"
// before it, a UTF-8 BOM at the very start and empty lines.
func oracleLines(stdin []byte) []string {
	s := strings.TrimPrefix(string(stdin), "\ufeff")
	parts := strings.Split(s, "\n")
	var lines []string
	for i, p := range parts {
		if i < len(parts)-1 { // followed by "\n"
			p = strings.TrimSuffix(p, "\r")
		}
		if p != "" {
			lines = append(lines, p)
		}
	}
	return lines
}

// FuzzParseParams feeds arbitrary NAME=VALUE arguments to the parser. The
// property: either a usage error, or every argument became exactly one
// parameter whose name is the text before its first '=' and whose value is
// the rest, byte for byte, printable UTF-8 and not empty.
func FuzzParseParams(f *testing.F) {
	f.Add("id=7", "sku=42", "")
	f.Add("id=7\r", "", "")
	f.Add("id=", "7", "")
	f.Add("id= 7", "id=8", "x")
	f.Add("id==7", "a=b=c", "n\u00a0=1")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		args := []string{a, b, c}
		params, err := parseParams(args)
		if err != nil {
			var ue *usageError
			require.True(t, errors.As(err, &ue), "not a usage error: %v", err)
			return
		}
		require.Len(t, params, len(args))
		for _, arg := range args {
			name, value, ok := strings.Cut(arg, "=")
			require.True(t, ok)
			require.Equal(t, value, params[name], "argument %q", arg)
			require.NotEmpty(t, value)
			require.True(t, utf8.ValidString(value))
			for _, ch := range []byte(value) {
				require.False(t, ch < 0x20 || ch == 0x7f, "control byte 0x%02x accepted in value %q", ch, value)
			}
		}
	})
}
