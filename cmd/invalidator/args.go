package main

import "github.com/spf13/cobra"

// Argument checks that report a usage error (exit code 2).

func noArgs(cmd *cobra.Command, args []string) error { return asUsage(cobra.NoArgs(cmd, args)) }

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error { return asUsage(cobra.ExactArgs(n)(cmd, args)) }
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error { return asUsage(cobra.MinimumNArgs(n)(cmd, args)) }
}

func asUsage(err error) error {
	if err == nil {
		return nil
	}
	return &usageError{err}
}
