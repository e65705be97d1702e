package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestVersionCommand(t *testing.T) {
	t.Parallel()
	r := invoke(t, nil, "", "version", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	v := oneJSON[versionInfo](t, r.stdout)
	require.NotEmpty(t, v.Version)
	require.Equal(t, runtime.Version(), v.GoVersion)
	require.Equal(t, runtime.GOOS+"/"+runtime.GOARCH, v.Platform)

	r = invoke(t, nil, "", "version")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, "invalidator "+v.String()+"\n", r.stdout)
}

// The link-time stamp that `make build` passes is what version and
// --version print.
func TestVersionStampedAtLinkTime(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	t.Parallel()
	stamp := plainStamp
	bin, err := plainBinary()
	require.NoError(t, err)

	out, err := exec.Command(bin, "version", "--json").Output()
	require.NoError(t, err)
	v := oneJSON[versionInfo](t, string(out))
	require.Equal(t, stamp, v.Version)
	require.Equal(t, "0123456789ab", v.Commit)
	out, err = exec.Command(bin, "--version").Output()
	require.NoError(t, err)
	require.Contains(t, string(out), stamp)
}

// make build passes the stamp: a Makefile whose build target lost its
// -ldflags would ship binaries that say "devel".
func TestMakeBuildStampsVersion(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "Makefile"))
	require.NoError(t, err)
	out, err := exec.Command("make", "-n", "-C", root, "build", "VERSION=v9.8.7-stamp", "COMMIT=cafe").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.True(t, strings.Contains(string(out), "-X main.buildVersion=v9.8.7-stamp") && strings.Contains(string(out), "-X main.buildCommit=cafe"),
		"make build does not stamp the version:\n%s", out)
}
