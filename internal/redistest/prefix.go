package redistest

import (
	"strconv"
	"strings"
	"testing"
)

// maxPrefixName bounds the test-name part of a prefix, to keep keys short.
const maxPrefixName = 40

// Prefix returns a string unique to this call within the test binary's run
// (and, through a random run id, across runs sharing a server), built from
// the test's name, e.g. "TestScan_cluster-3fa9c1-7". It holds only ASCII
// letters, digits, '_' and '-', so it is safe in Redis keys, glob patterns,
// and asynq queue names (which asynq wraps in a {hash tag}). Add your own
// separator: Prefix(t) + ":user:1".
func Prefix(t testing.TB) string {
	t.Helper()
	h := current(t)
	return sanitizeName(t.Name()) + "-" + h.runID + "-" + strconv.FormatUint(h.prefixSeq.Add(1), 10)
}

// sanitizeName keeps letters and digits and turns anything else (subtest
// slashes, spaces, glob and hash-tag characters) into '_'.
func sanitizeName(name string) string {
	if len(name) > maxPrefixName {
		name = name[:maxPrefixName]
	}
	if name == "" {
		return "test"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		default:
			return '_'
		}
	}, name)
}
