package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

// No --help shows a Go-formatted duration (1m0s, 168h0m0s): duration
// defaults read the way a person writes them, as policy doc's do.
func TestHelpDurationsReadAsAPersonWritesThem(t *testing.T) {
	t.Parallel()
	goDuration := regexp.MustCompile(`\d+[hm]0s`)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.Fields(c.CommandPath())[1:]
		r := invoke(t, nil, "", append(path, "--help")...)
		require.Zero(t, r.code, "%s --help: %s", c.CommandPath(), r.stderr)
		require.NotRegexp(t, goDuration, r.stdout, "%s --help", c.CommandPath())
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newTestRoot())

	r := invoke(t, nil, "", "check-freshness", "--help")
	require.Contains(t, r.stdout, "(default 1min)")
}

// Every duration flag takes back the default its --help shows (1min, 7
// days), as it takes Go's form; and the value it then holds is that default.
func TestDurationFlagsTakeWhatHelpShows(t *testing.T) {
	t.Parallel()
	n := 0
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().AddFlagSet(c.InheritedFlags())
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Value.Type() != "duration" {
				return
			}
			n++
			before := f.Value.String()
			require.NoError(t, f.Value.Set(f.DefValue), "%s --%s %q", c.CommandPath(), f.Name, f.DefValue)
			require.Equal(t, before, f.Value.String(), "%s --%s %q", c.CommandPath(), f.Name, f.DefValue)
			require.Error(t, f.Value.Set("1 fortnight"))
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newTestRoot())
	require.Positive(t, n)

	r := invoke(t, nil, "", "check-freshness", "--ttl", "1 fortnight")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "1min")
}
