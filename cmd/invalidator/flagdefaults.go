package main

import (
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/invalidator/invalidator/keyspec"
)

// humanDurationDefaults makes --help show every duration flag's default
// the way a person writes it ("1min", not pflag's "1m0s"), with the
// HumanDuration of policy doc and of messages. DefValue is only ever shown,
// never parsed back, so what the flag takes is unchanged.
func humanDurationDefaults(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.PersistentFlags(), c.LocalNonPersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if f.Value.Type() != "duration" {
					return
				}
				if d, err := time.ParseDuration(f.DefValue); err == nil {
					f.DefValue = keyspec.HumanDuration(d)
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
