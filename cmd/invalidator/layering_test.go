package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A service that imports the producer or the read path must not build the
// CLI's applications or their dependencies (README, Layout). The Go toolchain
// refuses imports of cmd/invalidator/internal from the library, but not a
// library package that starts importing pgx, asynqmon or miniredis itself.
func TestLibraryBuildsNoCLIDependencies(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps",
		"github.com/invalidator/invalidator/enqueue",
		"github.com/invalidator/invalidator/cacheaside",
		"github.com/invalidator/invalidator/keyspec",
		"github.com/invalidator/invalidator/tasks").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/alicebob/miniredis", "github.com/hibiken/asynqmon",
			"github.com/jackc/pgx", "github.com/spf13/cobra", "github.com/invalidator/invalidator/cmd/"} {
			require.False(t, strings.HasPrefix(pkg, banned), "the library builds %s", pkg)
		}
	}
}
