package main

import (
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/invalidator/invalidator/keyspec"
)

// humanDurationDefaults makes --help show every duration flag's default
// the way a person writes it ("1min", not pflag's "1m0s"), with the
// HumanDuration of policy doc and of messages, and makes every duration
// flag (and so its env var) take that form back as well as Go's: a value
// copied from --help works.
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
				if _, done := f.Value.(humanDurationValue); !done {
					f.Value = humanDurationValue{f.Value}
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// humanDurationValue is a duration flag's value that also reads the form
// --help shows (keyspec.ParseHumanDuration). Its type and String stay
// pflag's, so GetDuration and the flag's printing are unchanged.
type humanDurationValue struct{ pflag.Value }

func (v humanDurationValue) Set(s string) error {
	d, err := keyspec.ParseHumanDuration(s)
	if err != nil {
		return err
	}
	return v.Value.Set(d.String())
}
