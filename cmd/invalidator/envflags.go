package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Every flag has an environment variable, set by one mechanism: bindEnv
// names each flag's variable when the command tree is built (and says it in
// the flag's help), and applyEnv sets each flag the command line left unset
// from it, before any command runs, exactly as if it had been typed. So a
// deployment can configure every setting in an env file, and a command that
// asks whether a flag was given (policy explain's --redis) sees it too.
//
// Names: a flag whose help already names its variable ("(env
// INVALIDATOR_CACHE_REDIS_URL...") keeps it, as several commands share
// those. Root flags are INVALIDATOR_<FLAG>; the others
// INVALIDATOR_<COMMAND>_<FLAG> after the command that declares them
// (INVALIDATOR_WORKER_CONCURRENCY), so that two commands' flags of the same
// name (worker and relay --poll-interval) never read one variable.

// envAnnotation is the flag annotation holding its variable's name.
const envAnnotation = "invalidator_env"

// noEnv reports flags no variable may set: a confirmation or a choice of
// everything must be typed, never inherited from an env file.
func noEnv(flag string) bool {
	switch flag {
	case "help", "version", "yes", "all", "force":
		return true
	}
	return false
}

var declaredEnvRE = regexp.MustCompile(`\(env (INVALIDATOR_[A-Z0-9_]+)`)

// bindEnv names the variable of every flag of root's tree.
func bindEnv(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		prefix := "INVALIDATOR_"
		if c != root {
			path := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
			prefix += envWord(strings.ReplaceAll(path, " ", "_")) + "_"
		}
		for _, fs := range []*pflag.FlagSet{c.PersistentFlags(), c.LocalNonPersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if noEnv(f.Name) || f.Annotations[envAnnotation] != nil {
					return
				}
				name := prefix + envWord(f.Name)
				if m := declaredEnvRE.FindStringSubmatch(f.Usage); m != nil {
					name = m[1]
				} else {
					f.Usage += " (env " + name + ")"
				}
				if f.Annotations == nil {
					f.Annotations = map[string][]string{}
				}
				f.Annotations[envAnnotation] = []string{name}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func envWord(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }

// envOf is the variable of f, "" for none.
func envOf(f *pflag.Flag) string {
	if v := f.Annotations[envAnnotation]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// applyEnv sets every flag of cmd (its own and those it inherits) that the
// command line left unset, from its variable when that is set and not
// empty. A value the flag refuses is a usage error that names the
// variable, not its value, which may be a secret.
func (a *app) applyEnv(cmd *cobra.Command) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		name := envOf(f)
		if f.Changed || name == "" {
			return
		}
		v := a.getenv(name)
		if v == "" {
			return
		}
		if err := cmd.Flags().Set(f.Name, v); err != nil {
			errs = append(errs, usagef("%s: not a valid value for --%s (%s)", name, f.Name, f.Value.Type()))
		}
	})
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// envRows are the variables of root's tree, one per variable, for the
// README's table: the variable, its flag and the commands that read it.
func envRows(root *cobra.Command) [][3]string {
	type row struct {
		flags, cmds []string
	}
	byName := map[string]*row{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.PersistentFlags(), c.LocalNonPersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				name := envOf(f)
				if name == "" {
					return
				}
				where := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
				if c == root {
					where = "every command"
				} else if fs == c.PersistentFlags() {
					where += " ..."
				}
				r := byName[name]
				if r == nil {
					r = &row{}
					byName[name] = r
				}
				if !slices.Contains(r.flags, "--"+f.Name) {
					r.flags = append(r.flags, "--"+f.Name)
				}
				if !slices.Contains(r.cmds, where) {
					r.cmds = append(r.cmds, where)
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	var out [][3]string
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range byName {
			if !yield(k) {
				return
			}
		}
	}) {
		r := byName[name]
		out = append(out, [3]string{name, strings.Join(r.flags, "`, `"), strings.Join(r.cmds, ", ")})
	}
	return out
}

// envTable is envRows as a Markdown table.
func envTable(root *cobra.Command) string {
	var b strings.Builder
	b.WriteString("| variable | flag | commands |\n| --- | --- | --- |\n")
	for _, r := range envRows(root) {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", r[0], r[1], r[2])
	}
	return b.String()
}
