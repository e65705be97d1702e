package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
	"github.com/invalidator/invalidator/worker"
)

type enqueueOpts struct {
	queue    string
	maxRetry int // used when the flag was given
	timeout  time.Duration
	asJSON   bool
	opts     []enqueue.Option // from the flags given, set by validate
}

// validate checks the override flags that were given and keeps them as
// options. An override that asynq would quietly change is refused: it
// clamps a negative retry count to 0 and counts timeouts in whole seconds,
// so --timeout 500ms would become no timeout at all (asynq's 30 min
// default) and 1500ms would become 1s.
func (o *enqueueOpts) validate(cmd *cobra.Command) error {
	o.opts = nil
	if o.queue != "" {
		o.opts = append(o.opts, enqueue.Queue(o.queue))
	}
	if cmd.Flag("max-retry").Changed {
		if o.maxRetry < 0 {
			return usagef("--max-retry must be 0 or more (0 sends a failed task straight to the dead letter), got %d", o.maxRetry)
		}
		o.opts = append(o.opts, enqueue.MaxRetry(o.maxRetry))
	}
	if cmd.Flag("timeout").Changed {
		if o.timeout < time.Second || o.timeout%time.Second != 0 {
			return usagef("--timeout must be a whole number of seconds, at least 1s (asynq counts task timeouts in seconds), got %s", o.timeout)
		}
		o.opts = append(o.opts, enqueue.Timeout(o.timeout))
	}
	return nil
}

func newEnqueueCmd(a *app) *cobra.Command {
	o := &enqueueOpts{}
	cmd := &cobra.Command{
		Use:   "enqueue",
		Short: "Enqueue an invalidation by hand",
		Long: `Enqueue an invalidation task, as application code does after a write.
Queue, retries and timeout come from the class in the policy (--policy);
the flags below override them. The new task IDs are printed, one per line.

When no running worker serves the task's queue, a warning says so on
stderr: the task is kept and waits until one starts, so the exit code is
still 0; --json tells it as "queue_served": false.`,
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.queue, "queue", "", "queue to use instead of the class's")
	f.IntVar(&o.maxRetry, "max-retry", 0, "retries before the dead letter, instead of the class's (0 or more; 0: straight to the dead letter)")
	f.DurationVar(&o.timeout, "timeout", 0, "per-attempt timeout, instead of the class's (whole seconds, at least 1s)")
	f.BoolVar(&o.asJSON, "json", false, `print {"task_ids": [...], "queue": "...", "queue_served": true|false|null} instead of one ID per line`)
	cmd.AddCommand(newEnqueueKeysCmd(a, o), newEnqueueFamilyCmd(a, o), newEnqueueBumpCmd(a, o), newEnqueueEventCmd(a, o))
	return group(cmd)
}

// enqueuer is a connected enqueue.Client with the override flags applied,
// and what it was built from.
type enqueuer struct {
	*enqueue.Client
	rdb    redis.UniversalClient
	policy *keyspec.Policy
}

func (e *enqueuer) close() { _ = e.rdb.Close() }

// client connects and applies the override flags (see validate).
func (o *enqueueOpts) client(cmd *cobra.Command, a *app) (*enqueuer, error) {
	policy, err := a.loadPolicy()
	if err != nil {
		return nil, err
	}
	rdb, err := a.queueRedis(cmd.Context())
	if err != nil {
		return nil, err
	}
	c, err := enqueue.New(rdb, enqueue.Config{Policy: policy})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return &enqueuer{Client: c.With(o.opts...), rdb: rdb, policy: policy}, nil
}

// enqueueResult is the --json output of an enqueue command.
type enqueueResult struct {
	TaskIDs []string `json:"task_ids"`
	Queue   string   `json:"queue"`
	// QueueServed says whether a running worker serves Queue; null when
	// that could not be read.
	QueueServed *bool `json:"queue_served"`
}

// queueOf is the queue task t of class goes to: the class's or --queue,
// and in a sharded class the shard t's shard key picks, as enqueue does.
func (o *enqueueOpts) queueOf(p *keyspec.Policy, class *keyspec.Class, t tasks.Task) string {
	q := class.Queue
	if o.queue != "" {
		q = o.queue
	}
	return p.QueueFor(q, tasks.ShardKey(t))
}

// checkServed warns on stderr when no worker serves queue: the task is
// kept, so the command still succeeds, but nothing happens until a worker
// starts, which a person typing the command should hear about. It costs
// one read while a worker serves the queue. Unknown (a read failed, an ACL
// denied it) is nil and no warning: the enqueue itself went through.
func (e *enqueuer) checkServed(cmd *cobra.Command, log *slog.Logger, queue string) *bool {
	served, err := worker.QueueServed(cmd.Context(), e.rdb, queue)
	if err != nil {
		log.Debug("could not check whether a worker serves the queue", "queue", queue, "err", err)
		return nil
	}
	if !served {
		fmt.Fprintf(cmd.ErrOrStderr(), "invalidator: warning: no worker serves queue %s: the task waits until one starts (start 'invalidator worker' with a policy whose classes include this queue)\n", queue)
	}
	return &served
}

// report checks that a worker serves queue and prints the task IDs.
func (o *enqueueOpts) report(cmd *cobra.Command, a *app, e *enqueuer, queue string, ids []string) error {
	served := e.checkServed(cmd, a.log, queue)
	return o.print(cmd.OutOrStdout(), enqueueResult{TaskIDs: ids, Queue: queue, QueueServed: served})
}

// print writes the task IDs, one per line, or r as JSON with --json.
func (o *enqueueOpts) print(w io.Writer, r enqueueResult) error {
	if o.asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	for _, id := range r.TaskIDs {
		if _, err := fmt.Fprintln(w, id); err != nil {
			return err
		}
	}
	return nil
}

func newEnqueueKeysCmd(a *app, o *enqueueOpts) *cobra.Command {
	var fromStdin, isHex, oneKeyPerLine bool
	cmd := &cobra.Command{
		Use:   "keys [KEY...]",
		Short: "Delete keys",
		Long: `Delete exact keys. Keys given as text (arguments, or one per line with
--stdin, LF or CRLF) must be UTF-8 without control characters, byte-order
marks or spaces at either end: such a byte is far more likely a mangled line
ending than part of the key, so it is refused (exit 2, naming the argument or
line) rather than deleting a different key. Give any other key with --hex,
as one run of hex digits per key.

xxd -p wraps its output every 60 hex digits (basenc --base16 every 76), so
a longer key would arrive as several keys. With --hex, a key of exactly
that many digits followed by another is refused (exit 2), since it cannot
be told from a wrap: make one line per key (xxd -p -c 0, basenc --base16
-w0), or add --one-key-per-line if the input already is.`,
		Example: `  invalidator enqueue keys user:42:profile user:42:sessions
  printf 'a\r\nb\r\n' | invalidator enqueue keys --stdin   # CRLF: the keys "a" and "b"
  invalidator enqueue keys --hex 00ff6b6579     # the key "\x00\xffkey"
  printf '%s' "$KEY" | xxd -p -c 0 | invalidator enqueue keys --stdin --hex`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(cmd); err != nil {
				return err
			}
			in := argInputs(args)
			if fromStdin {
				if len(args) > 0 {
					return usagef("give keys as arguments or with --stdin, not both")
				}
				var err error
				if in, err = readLines(cmd.InOrStdin()); err != nil {
					return err
				}
			}
			if len(in) == 0 {
				return usagef("no keys given: pass them as arguments or with --stdin")
			}
			if oneKeyPerLine && !isHex {
				return usagef("--one-key-per-line only applies to --hex input")
			}
			if isHex && !oneKeyPerLine {
				if err := refuseWrappedHex(in); err != nil {
					return err
				}
			}
			keys, err := decodeKeys(in, isHex)
			if err != nil {
				return err
			}
			e, err := o.client(cmd, a)
			if err != nil {
				return err
			}
			defer e.close()
			class, err := e.policy.Class(e.policy.DefaultClass)
			if err != nil {
				return err
			}
			// Keys that make several tasks may spread over a sharded
			// class's shards; the first task's queue is reported.
			queue := o.queueOf(e.policy, class, tasks.DeleteKeys{Keys: keys})
			ids, err := e.DeleteKeys(cmd.Context(), keys...)
			if err != nil {
				// The tasks enqueued before the failure, for the record.
				_ = o.print(cmd.OutOrStdout(), enqueueResult{TaskIDs: ids, Queue: queue})
				return err
			}
			return o.report(cmd, a, e, queue, ids)
		},
	}
	cmd.Flags().BoolVar(&fromStdin, "stdin", false, "read keys from standard input, one per line (LF or CRLF; blank lines skipped)")
	cmd.Flags().BoolVar(&isHex, "hex", false, "keys are hex-encoded, for binary keys and keys with control characters or surrounding spaces")
	cmd.Flags().BoolVar(&oneKeyPerLine, "one-key-per-line", false, "with --hex: every line is a whole key, even one of exactly 60 or 76 digits (otherwise refused as a likely wrapped xxd -p or basenc dump)")
	return cmd
}

// defaultConfirmAbove is how many matching keys a family delete may have
// before the CLI asks for confirmation.
const defaultConfirmAbove = 1000

func newEnqueueFamilyCmd(a *app, o *enqueueOpts) *cobra.Command {
	var (
		yes, dryRun, wait bool
		confirmAbove      int64
		cacheURL          string
	)
	cmd := &cobra.Command{
		Use:   "family FAMILY [PARAM=VALUE...]",
		Short: "Delete every key of a family that matches the given parameters",
		Long: `Delete by pattern inside one family of the policy. Parameters left out match
any value; values are matched literally (a value of * matches only "*").

First it counts the keys the delete would remove (a SCAN of the whole
keyspace, as the delete itself does, keeping only the family's keys where
the policy declares parameter values) and prints the count, and how many of
them also fit other families' templates. Above
--confirm-above keys it asks on a terminal, and refuses without one; --yes
skips the count and the question. The worker still stops at the family's
max_keys, if the policy sets one.

--wait follows the delete until it finishes: keys scanned and deleted and
the rate, on one updating line on a terminal; with --json, one object at the
end. Ctrl-C stops waiting, not the delete.`,
		Example: `  invalidator enqueue family product_price sku=42 --policy examples/policy.yaml
  invalidator enqueue family catalog_page category=shoes --dry-run
  invalidator enqueue family catalog_page category=shoes --yes --wait`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := minArgs(1)(cmd, args); err != nil {
				return err
			}
			if yes && dryRun {
				return usagef("--dry-run only counts; it cannot be combined with --yes")
			}
			if err := o.validate(cmd); err != nil {
				return err
			}
			if confirmAbove < 0 {
				return usagef("--confirm-above must be 0 or more (0 asks before deleting any key), got %d", confirmAbove)
			}
			params, err := parseParams(args[1:])
			if err != nil {
				return err
			}
			if !yes {
				if err := a.confirmFamilyDelete(cmd, args[0], params, cacheURL, confirmAbove, dryRun); err != nil {
					return err
				}
				if dryRun {
					return nil
				}
			}
			e, err := o.client(cmd, a)
			if err != nil {
				return err
			}
			defer e.close()
			id, err := e.DeleteFamily(cmd.Context(), args[0], params)
			if err != nil {
				return err
			}
			fam, err := e.policy.Family(args[0])
			if err != nil { // unreachable: DeleteFamily found it
				return err
			}
			queue := o.queueOf(e.policy, e.policy.ClassOf(fam), tasks.DeleteFamily{Family: fam.Name, Params: params})
			if wait {
				e.checkServed(cmd, a.log, queue)
				return a.waitFamilyDelete(cmd, o, id)
			}
			return o.report(cmd, a, e, queue, []string{id})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&wait, "wait", false, "follow the delete until it finishes, showing progress")
	f.BoolVarP(&yes, "yes", "y", false, "do not count or ask first")
	f.BoolVar(&dryRun, "dry-run", false, "count the matching keys and enqueue nothing")
	f.Int64Var(&confirmAbove, "confirm-above", defaultConfirmAbove, "ask for confirmation when more keys than this match (0 or more)")
	f.StringVar(&cacheURL, "cache-redis", "", "cache Redis to count in, if not the queue Redis (env "+envCacheRedisURL+")")
	return cmd
}

// confirmFamilyDelete counts the keys a family delete would remove, prints
// the count to stderr, and asks above the threshold.
func (a *app) confirmFamilyDelete(cmd *cobra.Command, family string, params map[string]string, cacheURL string, above int64, dryRun bool) error {
	policy, err := a.loadPolicy()
	if err != nil {
		return err
	}
	fam, err := policy.Family(family)
	if err != nil {
		return err
	}
	m, err := fam.Matcher(params)
	if err != nil {
		return err
	}
	cache, err := a.cacheRedis(cmd.Context(), cacheURL)
	if err != nil {
		return err
	}
	defer cache.Close()
	fc, err := countFamilyDelete(cmd.Context(), cache, policy, fam, params, m)
	if err != nil {
		return err
	}
	n := fc.Matched // what the worker deletes
	// Say where the count comes from: a CLI without the cache's URL
	// counts in the queue Redis, which may hold none of the keys.
	where := "the cache Redis"
	if a.env(cacheURL, envCacheRedisURL, "") == "" {
		where = "the queue Redis (the cache too, unless --cache-redis says otherwise)"
	}
	msg := fc.describe(where)
	if dryRun {
		_, err := fmt.Fprint(cmd.OutOrStdout(), msg)
		return err
	}
	fmt.Fprint(cmd.ErrOrStderr(), msg)
	if n <= above {
		return nil
	}
	return confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), "delete "+strconv.FormatInt(n, 10)+" keys",
		fmt.Sprintf("Delete %d keys of family %s (more than --confirm-above %d)?", n, family, above))
}

func newEnqueueEventCmd(a *app, o *enqueueOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "event EVENT [ATTRIBUTE=VALUE...]",
		Short: "Publish an event; the policy decides which keys it invalidates",
		Long: `Publish an event of the policy's events section, as application code does with
enqueue.Client.Publish after a write. Every attribute the event declares must
be given, and no other. 'invalidator policy explain' shows what it will do.`,
		Example: `  invalidator enqueue event product.updated id=7 --policy examples/policy.yaml`,
	}
	cmd.RunE = familyRunE(a, o, (*enqueue.Client).Publish, func(name string, attrs map[string]string) tasks.Task {
		return tasks.Event{Name: name, Attrs: attrs}
	}, func(p *keyspec.Policy, name string) (*keyspec.Class, error) {
		e, err := p.Event(name)
		if err != nil {
			return nil, err
		}
		return p.ClassOfEvent(e), nil
	})
	return cmd
}

func newEnqueueBumpCmd(a *app, o *enqueueOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "bump FAMILY PARAM=VALUE...",
		Short:   "Bump the version of a version family, orphaning its cached data",
		Example: `  invalidator enqueue bump user_feed user_id=42 --policy examples/policy.yaml`,
	}
	cmd.RunE = familyRunE(a, o, (*enqueue.Client).BumpVersion, func(name string, params map[string]string) tasks.Task {
		return tasks.BumpVersion{Family: name, Params: params}
	}, classOfFamily)
	return cmd
}

// classOfFamily is the class of a family's tasks.
func classOfFamily(p *keyspec.Policy, name string) (*keyspec.Class, error) {
	f, err := p.Family(name)
	if err != nil {
		return nil, err
	}
	return p.ClassOf(f), nil
}

// familyRunE runs a NAME PARAM=VALUE... command (a family, or an event and
// its attributes) through one Client method; task is the task it makes (for
// its shard key) and classOf names the class it takes.
func familyRunE(a *app, o *enqueueOpts,
	call func(*enqueue.Client, context.Context, string, map[string]string) (string, error),
	task func(string, map[string]string) tasks.Task,
	classOf func(*keyspec.Policy, string) (*keyspec.Class, error),
) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := minArgs(1)(cmd, args); err != nil {
			return err
		}
		if err := o.validate(cmd); err != nil {
			return err
		}
		params, err := parseParams(args[1:])
		if err != nil {
			return err
		}
		e, err := o.client(cmd, a)
		if err != nil {
			return err
		}
		defer e.close()
		id, err := call(e.Client, cmd.Context(), args[0], params)
		if err != nil {
			return err
		}
		class, err := classOf(e.policy, args[0])
		if err != nil { // unreachable: call found it
			return err
		}
		return o.report(cmd, a, e, o.queueOf(e.policy, class, task(args[0], params)), []string{id})
	}
}
