package pgtest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPickBinDir(t *testing.T) {
	t.Parallel()
	onlyInitdb, both := t.TempDir(), t.TempDir()
	touch := func(dir, name string, mode os.FileMode) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode))
	}
	touch(onlyInitdb, "initdb", 0o755)
	touch(both, "initdb", 0o755)
	touch(both, "postgres", 0o755)

	got, err := pickBinDir([]string{"/nonexistent", onlyInitdb, both})
	require.NoError(t, err)
	require.Equal(t, both, got)

	notExec := t.TempDir()
	touch(notExec, "initdb", 0o644)
	touch(notExec, "postgres", 0o644)
	_, err = pickBinDir([]string{onlyInitdb, notExec})
	require.ErrorIs(t, err, errNotInstalled)
	require.Contains(t, err.Error(), "apt-get install postgresql")
}

func TestVersionOfPrefersNewest(t *testing.T) {
	t.Parallel()
	require.Equal(t, 16, versionOf("/usr/lib/postgresql/16/bin"))
	require.Equal(t, 0, versionOf("/usr/lib/postgresql/x/bin"))
}

// recorder is a testing.TB that records Skip and Fatal instead of ending
// the goroutine.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Skip(args ...any)          { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatal(args ...any)         { r.failed = fmt.Sprint(args...) }
func (r *recorder) Fatalf(f string, a ...any) { r.failed = fmt.Sprintf(f, a...) }

// Missing binaries skip on a developer machine and fail under CI, where
// .ci/run installs them.
func TestMissingServerSkipsOrFailsUnderCI(t *testing.T) {
	for _, tc := range []struct{ ci, want string }{{"", "skip"}, {"false", "skip"}, {"true", "fail"}} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			h := &harness{runID: "x"}
			h.once.Do(func() { h.srvErr = fmt.Errorf("wrapped: %w", errNotInstalled) })
			r := &recorder{TB: t}
			_ = h.server(r)
			if tc.want == "skip" {
				require.Contains(t, r.skipped, "no PostgreSQL server binaries")
				require.Empty(t, r.failed)
			} else {
				require.Contains(t, r.failed, "CI is set, so this is a failure")
			}
		})
	}
}
