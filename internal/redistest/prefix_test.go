package redistest_test

import (
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

var safePrefix = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func TestPrefix_UniqueAndSafe(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]bool{} // guarded by mu
	add := func(t *testing.T, p string) {
		mu.Lock()
		defer mu.Unlock()
		require.False(t, seen[p], "prefix %q handed out twice", p)
		seen[p] = true
	}
	for range 500 {
		p := redistest.Prefix(t)
		require.Regexp(t, safePrefix, p)
		require.True(t, strings.HasPrefix(p, "TestPrefix_UniqueAndSafe-"), p)
		add(t, p)
	}
	for _, name := range []string{"a", "b", "c"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for range 100 {
				p := redistest.Prefix(t)
				require.Regexp(t, safePrefix, p)
				add(t, p)
			}
		})
	}
}

func TestSanitizeName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"TestX":                 "TestX",
		"TestX/sub_test":        "TestX_sub_test",
		"TestX/{tag}:*?[a] b":   "TestX__tag_____a__b",
		"":                      "test",
		"Test_é":                "Test__",
		strings.Repeat("a", 50): strings.Repeat("a", 40),
	} {
		require.Equal(t, want, redistest.SanitizeName(in), "sanitize %q", in)
	}
}
