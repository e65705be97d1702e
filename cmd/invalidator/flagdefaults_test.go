package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
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
