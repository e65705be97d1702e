package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// Argument checks that report a usage error (exit code 2).

func noArgs(cmd *cobra.Command, args []string) error { return asUsage(cmd, cobra.NoArgs(cmd, args)) }

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error { return asUsage(cmd, cobra.ExactArgs(n)(cmd, args)) }
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error { return asUsage(cmd, cobra.MinimumNArgs(n)(cmd, args)) }
}

// asUsage adds the command's usage line, which names the arguments that
// cobra's message only counts.
func asUsage(cmd *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	return &usageError{fmt.Errorf("%w; usage: %s", err, cmd.UseLine())}
}
