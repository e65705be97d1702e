package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/internal/slot"
	"github.com/invalidator/invalidator/keyspec"
)

func newPolicyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with the policy file (classes, key families and events)",
	}
	cmd.AddCommand(newPolicyLintCmd(a), newPolicyDocCmd(a), newPolicyExplainCmd(a))
	return group(cmd)
}

func newPolicyLintCmd(a *app) *cobra.Command {
	var strict, asJSON bool
	cmd := &cobra.Command{
		Use:   "lint [FILE]",
		Short: "Check a policy file and report every problem with its line",
		Long: `Check a policy file. Every problem is reported as FILE:LINE:COLUMN: FIELD: what
is wrong, not just the first. Besides the syntax and every field, it finds:

  - two families whose templates can render the same key (undeclared
    values taken to hold no ':', declared ones as declared)
  - invalid parameter declarations (params: {id: {match: RE}}), and event
    attributes given to declarations that no value matches all at once
  - events that invalidate nothing, or name unknown families
  - template parameters an event does not provide (neither an attribute
    nor a wildcard), and wildcards that make an unsafe pattern
  - TTL jitter outside [0, 0.5], unknown classes, modes and strategies

and warns about families that no event invalidates, event attributes that
no template uses, and families whose pattern deletes also match other
families' keys (a glob '*' matches ':' too; declare the parameters' values
to keep a delete to its family). For each table of the tables section
(invalidator cdc) it checks that the event exists and that every event
attribute is given by a column, notes the REPLICA IDENTITY the table
needs for deletes, and warns about a family of its event that a TRUNCATE
cannot invalidate (a template that starts with a parameter). Exit code 1 when there are errors (or
warnings, with --strict).

FILE defaults to --policy (env ` + envPolicy + `). With --json, stdout is one
JSON object: {"file", "ok", "errors": [...], "warnings": [...], "classes",
"families", "events"}, each problem as {"file", "line", "column", "field",
"message"}.`,
		Example: `  invalidator policy lint examples/policy.yaml
  INVALIDATOR_POLICY=examples/policy.yaml invalidator policy lint --json`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file, err := a.policyArg(args)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			rep := lintReport{File: file, Errors: []lintProblem{}, Warnings: []lintProblem{}}
			p, err := keyspec.Load(file)
			var verrs keyspec.ValidationErrors
			switch {
			case errors.As(err, &verrs):
				for _, e := range verrs {
					rep.Errors = append(rep.Errors, problemOf(e))
				}
			case err != nil:
				return err
			default:
				for _, w := range p.Warnings() {
					rep.Warnings = append(rep.Warnings, problemOf(w))
				}
				rep.Classes, rep.Families, rep.Events = len(p.Classes), len(p.Families), len(p.Events)
			}
			rep.OK = len(rep.Errors) == 0 && !(strict && len(rep.Warnings) > 0)
			if asJSON {
				if err := json.NewEncoder(out).Encode(rep); err != nil {
					return err
				}
			} else {
				for _, e := range verrs {
					fmt.Fprintln(out, e.Error())
				}
				if p != nil {
					for _, line := range shardLines(p) {
						fmt.Fprintln(out, line)
					}
					for _, w := range p.Warnings() {
						fmt.Fprintf(out, "%s (warning)\n", w.Error())
					}
					for _, n := range p.TableNotes() {
						fmt.Fprintf(out, "%s (note)\n", n)
					}
				}
			}
			switch {
			case len(rep.Errors) > 0:
				return fmt.Errorf("%s: %d %s", file, len(rep.Errors), plural(len(rep.Errors), "problem", "problems"))
			case !rep.OK:
				return fmt.Errorf("%s: %d %s (--strict)", file, len(rep.Warnings), plural(len(rep.Warnings), "warning", "warnings"))
			case asJSON:
				return nil
			}
			_, err = fmt.Fprintf(out, "%s: ok (%d classes, %d families, %d events, %d warnings)\n",
				file, len(p.Classes), len(p.Families), len(p.Events), len(rep.Warnings))
			return err
		},
	}
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on warnings too")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

// lintReport is what policy lint --json prints.
type lintReport struct {
	File     string        `json:"file"`
	OK       bool          `json:"ok"`
	Errors   []lintProblem `json:"errors"`
	Warnings []lintProblem `json:"warnings"`
	Classes  int           `json:"classes"`
	Families int           `json:"families"`
	Events   int           `json:"events"`
}

// lintProblem is one error or warning of policy lint --json.
type lintProblem struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func problemOf(e keyspec.ValidationError) lintProblem {
	return lintProblem{File: e.File, Line: e.Line, Column: e.Column, Field: e.Field, Message: e.Msg}
}

// policyArg is the policy file a command names, else --policy or its
// env var: a user who set INVALIDATOR_POLICY need not type it again.
func (a *app) policyArg(args []string) (string, error) {
	if len(args) == 1 {
		return args[0], nil
	}
	if path := a.env(a.policy, envPolicy, ""); path != "" {
		return path, nil
	}
	return "", usagef("no policy file: give FILE, --policy FILE or %s", envPolicy)
}

func newPolicyDocCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "doc [FILE]",
		Short: "Print the policy as Markdown tables: families, events, tables and classes",
		Long: `Print the policy as Markdown, for a wiki or a README: one table of families
(template, class, TTL, strategy, mode, owner, the events that invalidate
it, and its audit: how often, how many keys, how compared), one of events (owner, attributes and what each invalidates), one of
the tables section when there is one (invalidator cdc: each table's event,
attribute ← column, what a TRUNCATE invalidates, and the columns its
REPLICA IDENTITY must cover), and one of classes. It is the shared policy file rendered for humans.`,
		Example: "  invalidator policy doc examples/policy.yaml > docs/cache-policy.md",
		Args:    maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file, err := a.policyArg(args)
			if err != nil {
				return err
			}
			p, err := keyspec.Load(file)
			if err != nil {
				return &usageError{err}
			}
			return writePolicyDoc(cmd.OutOrStdout(), file, p)
		},
	}
}

// writePolicyDoc renders p as Markdown.
func writePolicyDoc(w io.Writer, source string, p *keyspec.Policy) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Cache invalidation policy\n\nGenerated from `%s` by `invalidator policy doc`.\n\n", source)
	b.WriteString("## Families\n\n")
	b.WriteString("| family | template | class | TTL | strategy | mode | owner | invalidated by | audit every | audit sample | audit compare |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, name := range p.FamilyNames() {
		f := p.Families[name]
		strategy := string(f.Strategy)
		if f.MaxKeys > 0 {
			strategy += fmt.Sprintf(" (max_keys %d)", f.MaxKeys)
		}
		events := p.EventsOf(name)
		every, sample, compare := auditText(f.Audit)
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", md(name), strings.ReplaceAll(f.Template.String(), "|", `\|`), md(f.Class),
			ttlText(f.TTL, f.Jitter), md(strategy), md(string(f.Mode)), orDash(f.Owner), orDash(strings.Join(events, ", ")),
			every, sample, compare)
	}
	if len(p.Events) > 0 {
		b.WriteString("\n## Events\n\n")
		b.WriteString("| event | attributes | invalidates | owner | description |\n")
		b.WriteString("| --- | --- | --- | --- | --- |\n")
		for _, name := range p.EventNames() {
			e := p.Events[name]
			var inv []string
			for _, i := range e.Invalidates {
				inv = append(inv, invalidationText(p, i))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", md(name), orDash(strings.Join(e.Attributes, ", ")),
				strings.Join(inv, "<br>"), orDash(e.Owner), orDash(e.Description))
		}
	}
	if len(p.Tables) > 0 {
		writeTablesDoc(&b, p)
	}
	b.WriteString("\n## Freshness classes\n\n")
	b.WriteString("| class | TTL | queue | weight | retries | timeout | backoff | second delete |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, name := range p.ClassNames() {
		c := p.Classes[name]
		second := "—"
		if c.SecondDelete > 0 {
			second = "after " + keyspec.HumanDuration(c.SecondDelete)
		}
		def := ""
		if name == p.DefaultClass {
			def = " (default)"
		}
		queue := md(c.Queue)
		if c.Shards > 1 {
			queue = fmt.Sprintf("%s, %d shards: %s", queue, c.Shards, md(strings.Join(c.Queues(), ", ")))
		}
		h := keyspec.HumanDuration
		fmt.Fprintf(&b, "| %s%s | %s | %s | %d | %d | %s | %s..%s | %s |\n", md(name), def, ttlText(c.TTL, c.Jitter),
			queue, c.Weight, c.MaxRetry, h(c.Timeout), h(c.BackoffBase), h(c.BackoffMax), second)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeTablesDoc renders the tables section: what invalidator cdc
// publishes for each table's row changes, what a TRUNCATE of it
// invalidates, and the REPLICA IDENTITY its deletes need.
func writeTablesDoc(b *strings.Builder, p *keyspec.Policy) {
	b.WriteString("\n## Tables (invalidator cdc)\n\n")
	b.WriteString("Each insert, update and delete of a table publishes its event with the attributes read from the columns; ")
	b.WriteString("an update that changes a mapped column publishes for the old row too. ")
	b.WriteString("A delete (and such an update) reads the old row's columns, which PostgreSQL sends only for columns in the table's REPLICA IDENTITY: ")
	b.WriteString("the primary key by default, else `REPLICA IDENTITY FULL` or `USING INDEX` of a unique index on them (`invalidator cdc setup` checks).\n\n")
	b.WriteString("| table | event | attribute ← column | on TRUNCATE | replica identity must cover |\n")
	b.WriteString("| --- | --- | --- | --- | --- |\n")
	for _, name := range p.TableNames() {
		t := p.Tables[name]
		var attrs []string
		for _, a := range slices.Sorted(maps.Keys(t.Attributes)) {
			attrs = append(attrs, a+" ← "+t.Attributes[a])
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", md(name), md(t.Event), orDash(strings.Join(attrs, ", ")),
			truncateText(p, t.Event), md(strings.Join(t.Columns(), ", ")))
	}
}

// truncateText says what a TRUNCATE of a table whose event is event
// invalidates: every key of each of its families (a version family's
// version keys), or why a family cannot be deleted whole.
func truncateText(p *keyspec.Policy, event string) string {
	e, ok := p.Events[event]
	if !ok {
		return "—"
	}
	var out []string
	seen := map[string]bool{}
	for _, inv := range e.Invalidates {
		f := p.Families[inv.Family]
		if f == nil || seen[f.Name] {
			continue
		}
		seen[f.Name] = true
		what := "every key of " + f.Name
		if f.Strategy == keyspec.StrategyVersion {
			what = "every version key of " + f.Name
		}
		if _, err := f.DeleteMatcher(nil); err != nil {
			what = f.Name + ": not invalidated (its template cannot be deleted whole)"
		}
		out = append(out, what)
	}
	return orDash(strings.Join(out, "<br>"))
}

// shardLines describes each sharded class for lint: its shard queues with
// their hash slots and the weight each gets, so an operator can check
// where they land on the cluster.
func shardLines(p *keyspec.Policy) []string {
	var lines []string
	weights := p.QueueWeights()
	for _, name := range p.ClassNames() {
		c := p.Classes[name]
		if c.Shards <= 1 {
			continue
		}
		parts := make([]string, 0, c.Shards)
		for _, q := range c.Queues() {
			parts = append(parts, fmt.Sprintf("%s (slot %d, weight %d)", q, slot.Of(q), weights[q]))
		}
		lines = append(lines, fmt.Sprintf("class %s: %d shards of queue %s (weight %d, kept for tasks queued before the shards): %s",
			name, c.Shards, c.Queue, weights[c.Queue], strings.Join(parts, ", ")))
	}
	return lines
}

// auditText gives a family's audit columns: the schedule ("on demand"
// with a section but no audit_every), the sample and the compare mode
// with its fields; dashes without an audit section.
func auditText(a *keyspec.Audit) (every, sample, compare string) {
	if a == nil {
		return "—", "—", "—"
	}
	every = "on demand"
	if a.Every > 0 {
		every = keyspec.HumanDuration(a.Every)
	}
	sample = strconv.Itoa(a.Sample)
	if a.Sample == 0 {
		sample = "100 (default)"
	}
	compare = md(a.Compare)
	if len(a.Fields) > 0 {
		compare += " (" + md(strings.Join(a.Fields, ", ")) + ")"
	}
	return every, sample, compare
}

// invalidationText says what one invalidation of an event does:
// "product_price by pattern (sku = id, currency = *)".
func invalidationText(p *keyspec.Policy, inv keyspec.Invalidation) string {
	f := p.Families[inv.Family]
	verb := "delete"
	switch {
	case f.Strategy == keyspec.StrategyVersion:
		verb = "bump"
	case len(inv.Wildcard) > 0:
		verb = "pattern delete"
	}
	var params []string
	for _, param := range f.Template.Params() {
		switch attr, mapped := inv.Params[param]; {
		case slices.Contains(inv.Wildcard, param):
			params = append(params, param+" = *")
		case mapped:
			params = append(params, param+" = "+attr)
		}
	}
	s := verb + " " + md(inv.Family)
	if len(params) > 0 {
		s += " (" + md(strings.Join(params, ", ")) + ")"
	}
	return s
}

func ttlText(ttl time.Duration, jitter float64) string {
	if ttl == 0 {
		return "none"
	}
	if jitter == 0 {
		return keyspec.HumanDuration(ttl)
	}
	return fmt.Sprintf("%s ±%g %%", keyspec.HumanDuration(ttl), jitter*100)
}

// md escapes the characters that would break a Markdown table cell.
func md(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "*", `\*`, "_", `\_`).Replace(s)
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return md(s)
}

// explainRow is one action of `policy explain`.
type explainRow struct {
	Action   string `json:"action"`
	Family   string `json:"family"`
	Class    string `json:"class"`
	Mode     string `json:"mode"`
	Key      string `json:"key,omitempty"`
	Pattern  string `json:"pattern,omitempty"`
	Matching *int64 `json:"matching_keys,omitempty"` // with a cache to count in: what the action removes
	// Of a pattern delete, with a cache: the keys the pattern matches
	// (Matching counts those of the family, after its declarations filter
	// them), and the keys among Matching that also fit other families'
	// templates, by family.
	Scanned *int64           `json:"scanned_keys,omitempty"`
	Others  map[string]int64 `json:"other_families_keys,omitempty"`
	Version *int64           `json:"current_version,omitempty"`
	// Reason of an action "refused": the event's values cannot render a
	// key of the family, so the worker skips it (keyspec.Refusal).
	Reason string `json:"reason,omitempty"`
}

func newPolicyExplainCmd(a *app) *cobra.Command {
	var (
		asJSON   bool
		cacheURL string
	)
	cmd := &cobra.Command{
		Use:   "explain EVENT [ATTRIBUTE=VALUE...]",
		Short: "Show exactly which keys, patterns and versions an event invalidates",
		Long: `Resolve an event against the policy (--policy) and print each action it
would take: the keys it deletes, the patterns it deletes by, the versions it
bumps, with each family's class and mode. Nothing is enqueued.

Given a live cache (--redis or --cache-redis), it also counts the keys each
action would remove (a SCAN per pattern, read-only, keeping only the
family's keys where the policy declares parameter values, and saying how
many also fit other families' templates) and reads the current versions.`,
		Example: `  invalidator policy explain product.updated id=7 --policy examples/policy.yaml
  invalidator policy explain product.updated id=7 --redis redis://127.0.0.1:6379 --json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := minArgs(1)(cmd, args); err != nil {
				return err
			}
			attrs, err := parseParams(args[1:])
			if err != nil {
				return err
			}
			p, err := a.loadPolicy()
			if err != nil {
				return err
			}
			actions, refused, err := p.Resolve(args[0], attrs)
			if err == nil {
				err = keyspec.RefusedAll(args[0], actions, refused) // as enqueue refuses it
			}
			if err != nil {
				return err
			}
			var cache redis.UniversalClient
			if cmd.Flag("redis").Changed || cacheURL != "" {
				if cache, err = a.cacheRedis(cmd.Context(), cacheURL); err != nil {
					return err
				}
				defer cache.Close()
			}
			rows := make([]explainRow, 0, len(actions))
			for _, act := range actions {
				r := explainRow{Action: string(act.Kind), Family: act.Family.Name, Class: act.Family.Class,
					Mode: string(act.Family.Mode), Key: act.Key, Pattern: act.Pattern}
				if cache != nil {
					if err := countAction(cmd, cache, p, act, &r); err != nil {
						return err
					}
				}
				rows = append(rows, r)
			}
			for _, ref := range refused {
				rows = append(rows, explainRow{Action: "refused", Family: ref.Family.Name, Class: ref.Family.Class,
					Mode: string(ref.Family.Mode), Reason: ref.Err.Error()})
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(map[string]any{"event": args[0], "attributes": attrs, "actions": rows})
			}
			e := p.Events[args[0]]
			fmt.Fprintf(out, "event %s", args[0])
			if e.Owner != "" {
				fmt.Fprintf(out, " (owner %s)", e.Owner)
			}
			fmt.Fprintln(out)
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			header := "ACTION\tFAMILY\tCLASS\tMODE\tKEY OR PATTERN"
			if cache != nil {
				header += "\tIN CACHE"
			}
			fmt.Fprintln(tw, header)
			for _, r := range rows {
				target := fmt.Sprintf("%q", r.Key+r.Pattern)
				if r.Reason != "" {
					target = "- (skipped: " + r.Reason + ")"
				}
				line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s", r.Action, r.Family, r.Class, r.Mode, target)
				switch {
				case r.Matching != nil:
					line += fmt.Sprintf("\t%d %s", *r.Matching, keysWord(*r.Matching))
					var notes []string
					if r.Scanned != nil && *r.Scanned > *r.Matching {
						notes = append(notes, fmt.Sprintf("%d other keys match the pattern and are kept", *r.Scanned-*r.Matching))
					}
					for _, name := range slices.Sorted(maps.Keys(r.Others)) {
						notes = append(notes, fmt.Sprintf("%d also fit family %s", r.Others[name], name))
					}
					if len(notes) > 0 {
						line += " (" + strings.Join(notes, "; ") + ")"
					}
				case r.Version != nil:
					line += fmt.Sprintf("\tversion %d", *r.Version)
				case cache != nil:
					line += "\tno version yet"
				}
				fmt.Fprintln(tw, line)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().StringVar(&cacheURL, "cache-redis", "", "count in this cache Redis; --redis counts in the queue Redis, or in "+envCacheRedisURL+" when set")
	return cmd
}

// countAction fills in how much of the cache an action would touch.
func countAction(cmd *cobra.Command, cache redis.UniversalClient, p *keyspec.Policy, act keyspec.Action, r *explainRow) error {
	ctx := cmd.Context()
	switch act.Kind {
	case keyspec.ActionDelete:
		n, err := cache.Exists(ctx, act.Key).Result()
		if err != nil {
			return &unreachableError{fmt.Errorf("count %q: %w", act.Key, err)}
		}
		r.Matching = &n
	case keyspec.ActionPattern:
		m, err := act.Family.Matcher(act.Params)
		if err != nil {
			return err
		}
		fc, err := countFamilyDelete(ctx, cache, p, act.Family, act.Params, m)
		if err != nil {
			return &unreachableError{err}
		}
		r.Matching, r.Scanned = &fc.Matched, &fc.Scanned
		if len(fc.Others) > 0 {
			r.Others = fc.Others
		}
	case keyspec.ActionBump:
		v, err := cache.Get(ctx, act.Key).Int64()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read version %q: %w", act.Key, err)
		}
		r.Version = &v
	}
	return nil
}
