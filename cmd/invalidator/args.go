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

// group makes a command that only holds subcommands answer an unknown
// subcommand with a usage error (exit 2) rather than its help and exit 0.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	return cmd
}
