package tasks

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSeedCorpus keeps the checked-in FuzzUnmarshal seeds meaningful. Their
// names say what they are: valid_* decode as exactly one kind, newer_* are
// from a newer format, everything else is malformed for every kind. The
// valid_* seeds were written by format version 1, so after any FormatVersion
// bump they double as proof that old queued tasks still decode.
func TestSeedCorpus(t *testing.T) {
	t.Parallel()

	dir := filepath.Join("testdata", "fuzz", "FuzzUnmarshal")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)

	validKinds := map[string]bool{}
	newer, malformed := 0, 0
	for _, e := range entries {
		payload := readSeed(t, filepath.Join(dir, e.Name()))
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "valid_"):
			var kinds []string
			for _, kind := range Kinds() {
				if _, err := Unmarshal(kind, payload); err == nil {
					kinds = append(kinds, kind)
				}
			}
			require.Len(t, kinds, 1, "%s decodes as %v", name, kinds)
			validKinds[kinds[0]] = true
		case strings.HasPrefix(name, "newer_"):
			for _, kind := range Kinds() {
				_, err := Unmarshal(kind, payload)
				require.ErrorIs(t, err, ErrNewerFormat, name)
			}
			newer++
		default:
			for _, kind := range Kinds() {
				_, err := Unmarshal(kind, payload)
				require.ErrorIs(t, err, ErrMalformed, "%s as %s", name, kind)
			}
			malformed++
		}
	}
	require.Len(t, validKinds, len(Kinds()), "a valid seed for every kind")
	require.Positive(t, newer)
	require.GreaterOrEqual(t, malformed, 5)
}

// readSeed parses a one-argument "go test fuzz v1" file holding []byte("...").
func readSeed(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	require.Len(t, lines, 2, path)
	require.Equal(t, "go test fuzz v1", lines[0], path)
	quoted, ok := strings.CutPrefix(lines[1], "[]byte(")
	require.True(t, ok, path)
	quoted, ok = strings.CutSuffix(quoted, ")")
	require.True(t, ok, path)
	s, err := strconv.Unquote(quoted)
	require.NoError(t, err, path)
	return []byte(s)
}
