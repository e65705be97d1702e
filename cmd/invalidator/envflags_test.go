package main

import (
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

func newTestRoot() *cobra.Command {
	return newRootCmd(&app{getenv: func(string) string { return "" }})
}

// Every flag has an INVALIDATOR_* variable that its help names, and no
// command has two flags on one variable.
func TestEveryFlagHasAnEnvVar(t *testing.T) {
	t.Parallel()
	root := newTestRoot()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		seen := map[string]string{}
		c.Flags().AddFlagSet(c.InheritedFlags())
		c.Flags().VisitAll(func(f *pflag.Flag) {
			name := envOf(f)
			if noEnv(f.Name) {
				require.Empty(t, name, "%s --%s must be typed, never set by a variable", c.CommandPath(), f.Name)
				return
			}
			require.True(t, strings.HasPrefix(name, "INVALIDATOR_"), "%s --%s has no env var", c.CommandPath(), f.Name)
			require.Contains(t, f.Usage, name, "%s --%s: its help does not name %s", c.CommandPath(), f.Name, name)
			other, dup := seen[name]
			require.False(t, dup, "%s: --%s and --%s share %s", c.CommandPath(), f.Name, other, name)
			seen[name] = f.Name
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// updateReadme rewrites the README's table of variables instead of
// comparing it: go test ./cmd/invalidator -run TestReadmeListsEveryEnvVar -update
var updateReadme = flag.Bool("update", false, "rewrite README.md's table of environment variables")

// The README's table of variables is the one the code builds.
func TestReadmeListsEveryEnvVar(t *testing.T) {
	const path = "../../README.md"
	const begin, end = "<details><summary>All environment variables</summary>\n\n", "\n</details>"
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	readme := string(b)
	i := strings.Index(readme, begin)
	require.GreaterOrEqual(t, i, 0, "README.md lost its table of environment variables")
	i += len(begin)
	j := strings.Index(readme[i:], end)
	require.GreaterOrEqual(t, j, 0)
	want := envTable(newTestRoot())
	if *updateReadme {
		require.NoError(t, os.WriteFile(path, []byte(readme[:i]+want+readme[i+j:]), 0o644))
		return
	}
	require.Equal(t, want, readme[i:i+j],
		"README.md's table of environment variables is out of date: go test ./cmd/invalidator -run TestReadmeListsEveryEnvVar -update")
}

// A variable sets its flag as if typed: worker settings, policy lint's
// FILE, and policy explain's --redis, whose counts used to need the flag.
func TestEnvSetsFlags(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	for _, k := range threeFamilyKeys {
		require.NoError(t, db.Client.Set(t.Context(), k, 1, 0).Err())
	}
	env := map[string]string{envRedisURL: db.URL, envPolicy: writePolicy(t, threeFamilies(""))}

	r := invoke(t, env, "", "policy", "explain", "catalog.reset", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var got struct {
		Actions []explainRow `json:"actions"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	require.Len(t, got.Actions, 1)
	require.NotNil(t, got.Actions[0].Matching, "policy explain did not count with %s set", envRedisURL)

	// A flag's own variable, and JSON from it as from --json.
	env["INVALIDATOR_QUEUES_JSON"] = "true"
	r = invoke(t, env, "", "queues")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.True(t, json.Valid([]byte(r.stdout)), r.stdout)
	// The command line wins over the variable.
	env["INVALIDATOR_QUEUES_JSON"] = "not-a-bool"
	r = invoke(t, env, "", "queues")
	require.Equal(t, exitUsage, r.code, r.stderr)
	require.Contains(t, r.stderr, "INVALIDATOR_QUEUES_JSON: not a valid value for --json")
	require.NotContains(t, r.stderr, "not-a-bool", "a variable's value may be a secret")
	r = invoke(t, env, "", "queues", "--json=false")
	require.Equal(t, exitOK, r.code, r.stderr)

	r = invoke(t, map[string]string{envRedisURL: db.URL, "INVALIDATOR_WORKER_CONCURRENCY": "-1"}, "", "worker")
	require.Equal(t, exitUsage, r.code, r.stderr)
	require.Contains(t, r.stderr, "concurrency")
}
