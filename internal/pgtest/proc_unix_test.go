//go:build unix

package pgtest

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// A root test binary runs the server as the postgres user, which cannot
// reach into a private TMPDIR: the server's directory then goes to /tmp.
func TestTempParentReachableByTheServerUser(t *testing.T) {
	private := t.TempDir()
	require.NoError(t, os.Chmod(private, 0o700))
	t.Setenv("TMPDIR", private)
	require.Equal(t, private, (*osUser)(nil).tempParent(), "the current user reaches its own TMPDIR")
	require.Equal(t, "/tmp", (&osUser{uid: 101, gid: 104}).tempParent())

	shared := t.TempDir()
	require.NoError(t, os.Chmod(shared, 0o1777))
	t.Setenv("TMPDIR", shared)
	require.Equal(t, shared, (&osUser{uid: 101, gid: 104}).tempParent())
}
