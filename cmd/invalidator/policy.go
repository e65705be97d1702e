package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/keyspec"
)

func newPolicyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with the policy file (classes and key families)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "lint FILE",
		Short: "Check a policy file and report every problem with its line",
		Long: `Check a policy file. Every problem is reported as FILE:LINE:COLUMN: FIELD: what
is wrong, not just the first. Exit code 1 when there are problems.`,
		Example: "  invalidator policy lint examples/policy.yaml",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := keyspec.Load(args[0])
			var verrs keyspec.ValidationErrors
			if errors.As(err, &verrs) {
				for _, e := range verrs {
					fmt.Fprintln(cmd.OutOrStdout(), e.Error())
				}
				return fmt.Errorf("%s: %d problems", args[0], len(verrs))
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d classes, %d families)\n", args[0], len(p.Classes), len(p.Families))
			return err
		},
	})
	return group(cmd)
}
