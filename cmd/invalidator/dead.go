package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/invalidator/invalidator/tasks"
	"github.com/invalidator/invalidator/worker"
)

// deadTask is one row of `invalidator dead list`.
type deadTask struct {
	ID       string    `json:"id"`
	Queue    string    `json:"queue"`
	Kind     string    `json:"kind"`
	Reason   string    `json:"reason"`
	FailedAt time.Time `json:"failed_at"`
	Retried  int       `json:"retried"`
	Summary  string    `json:"summary"`
}

func newDeadCmd(a *app) *cobra.Command {
	var queue string
	cmd := &cobra.Command{
		Use:   "dead",
		Short: "Inspect, retry and purge the dead letter (archived tasks)",
		Long: `Tasks that failed their last retry, and poison tasks that can never succeed,
are archived by asynq: that is the dead letter. Invalidations are idempotent,
so retrying one is always safe; it gets one more attempt. asynq keeps at most
10,000 archived tasks per queue and drops those older than 90 days: their
invalidations are lost, so do not let the dead letter grow.`,
	}
	cmd.PersistentFlags().StringVar(&queue, "queue", "", "only this queue (default: every queue)")
	cmd.AddCommand(newDeadListCmd(a, &queue), newDeadRetryCmd(a, &queue), newDeadPurgeCmd(a, &queue))
	return group(cmd)
}

// inspector connects and returns the queues to work on.
func (a *app) inspector(cmd *cobra.Command, only string) (*asynq.Inspector, []string, func(), error) {
	rdb, err := a.queueRedis(cmd.Context())
	if err != nil {
		return nil, nil, nil, err
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	done := func() { _ = rdb.Close() }
	names, err := insp.Queues()
	if err != nil {
		done()
		return nil, nil, nil, fmt.Errorf("list queues: %w", err)
	}
	slices.Sort(names)
	if only != "" {
		if !slices.Contains(names, only) {
			done()
			return nil, nil, nil, usagef("queue %q not found (queues: %s)", only, strings.Join(names, ", "))
		}
		names = []string{only}
	}
	return insp, names, done, nil
}

func newDeadListCmd(a *app, queue *string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List archived tasks with their reason",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			insp, names, done, err := a.inspector(cmd, *queue)
			if err != nil {
				return err
			}
			defer done()
			rows := []deadTask{}
			for _, q := range names {
				for page := 1; ; page++ {
					infos, err := insp.ListArchivedTasks(q, asynq.PageSize(500), asynq.Page(page))
					if err != nil {
						return fmt.Errorf("list archived tasks of queue %q: %w", q, err)
					}
					for _, ti := range infos {
						rows = append(rows, deadTask{
							ID: ti.ID, Queue: q, Kind: ti.Type, Reason: ti.LastErr, FailedAt: ti.LastFailedAt,
							Retried: ti.Retried, Summary: tasks.Describe(ti.Type, ti.Payload),
						})
					}
					if len(infos) < 500 {
						break
					}
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(rows)
			}
			if len(rows) == 0 {
				_, err := fmt.Fprintln(out, "the dead letter is empty")
				return err
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tQUEUE\tKIND\tFAILED AT\tREASON\tSUMMARY")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Queue, r.Kind,
					r.FailedAt.UTC().Format(time.RFC3339), oneLine(r.Reason, 100), oneLine(r.Summary, 60))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

// oneLine keeps a table cell on one line and at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// selection is what retry and purge act on: IDs or --all.
func selection(args []string, all bool) error {
	switch {
	case all && len(args) > 0:
		return usagef("give task IDs or --all, not both")
	case !all && len(args) == 0:
		return usagef("no task IDs given: pass IDs (see 'invalidator dead list') or --all")
	}
	return nil
}

// eachArchived calls fn with the queue of every ID; an ID in no queue's
// dead letter is an error, reported after the others were handled.
func eachArchived(insp *asynq.Inspector, queues, ids []string, fn func(queue, id string) error) error {
	var errs []error
	for _, id := range ids {
		ti, err := findTask(insp, queues, id)
		switch {
		case err != nil:
			return fmt.Errorf("task %s: %w", id, err)
		case ti == nil:
			errs = append(errs, fmt.Errorf("task %s is in no queue's dead letter", id))
		case ti.State != asynq.TaskStateArchived:
			errs = append(errs, fmt.Errorf("task %s in queue %q is %s, not archived", id, ti.Queue, ti.State))
		default:
			if err := fn(ti.Queue, id); err != nil {
				return fmt.Errorf("task %s in queue %q: %w", id, ti.Queue, err)
			}
		}
	}
	return errors.Join(errs...)
}

// findTask looks a task up in the queues; nil when no queue has it (it
// completed and was removed, or never existed).
func findTask(insp *asynq.Inspector, queues []string, id string) (*asynq.TaskInfo, error) {
	for _, q := range queues {
		ti, err := insp.GetTaskInfo(q, id)
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return ti, nil
	}
	return nil, nil
}

// deadAction is what retry and purge do to archived tasks.
type deadAction struct {
	done string                          // past tense, for the report
	all  func(queue string) (int, error) // every archived task of a queue
	one  func(queue, id string) error    // one archived task
}

// apply runs the action on every queue (all) or on the given IDs, and
// reports how many tasks it handled, also when some IDs failed.
func (d deadAction) apply(out io.Writer, insp *asynq.Inspector, queues, ids []string, all bool) error {
	n := 0
	var err error
	if all {
		for _, q := range queues {
			k, qerr := d.all(q)
			if qerr != nil {
				err = fmt.Errorf("queue %q: %w", q, qerr)
				break
			}
			n += k
		}
	} else {
		err = eachArchived(insp, queues, ids, func(q, id string) error {
			if err := d.one(q, id); err != nil {
				return err
			}
			n++
			return nil
		})
	}
	if _, werr := fmt.Fprintf(out, "%d tasks %s\n", n, d.done); err == nil {
		err = werr
	}
	return err
}

func newDeadRetryCmd(a *app, queue *string) *cobra.Command {
	var all, force bool
	cmd := &cobra.Command{
		Use:   "retry ID...|--all",
		Short: "Put archived tasks back on their queue to run again",
		Long: `Put archived tasks back on their queue to run again.

A family delete that stopped at its family's max_keys keeps its cursor; after
checking that the count is expected, --force lifts the cap for that task and
its retry resumes the scan where it stopped.`,
		Example: `  invalidator dead retry 6f1c0c1e-...
  invalidator dead retry --all --queue invalidator-critical
  invalidator dead retry --force 6f1c0c1e-...   # finish a family delete stopped at max_keys`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := selection(args, all); err != nil {
				return err
			}
			if force && all {
				return usagef("--force lifts max_keys for the family deletes you name: give their task IDs, not --all")
			}
			insp, names, done, err := a.inspector(cmd, *queue)
			if err != nil {
				return err
			}
			defer done()
			one := insp.RunTask
			if force {
				rdb, err := a.queueRedis(cmd.Context())
				if err != nil {
					return err
				}
				defer rdb.Close()
				one = func(queue, id string) error {
					ti, err := insp.GetTaskInfo(queue, id)
					if err != nil {
						return err
					}
					if ti.Type != tasks.KindDeleteFamily {
						return usagef("--force applies to family deletes (%s), and this task is %s", tasks.KindDeleteFamily, ti.Type)
					}
					if err := worker.ForceFamilyDelete(cmd.Context(), rdb, ti.ID, ti.Headers, 0); err != nil {
						return err
					}
					return insp.RunTask(queue, id)
				}
			}
			return deadAction{
				done: "put back to run",
				all:  insp.RunAllArchivedTasks,
				one:  one,
			}.apply(cmd.OutOrStdout(), insp, names, args, all)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every archived task (of --queue, or of every queue)")
	cmd.Flags().BoolVar(&force, "force", false, "lift the family's max_keys for these family deletes")
	return cmd
}

func newDeadPurgeCmd(a *app, queue *string) *cobra.Command {
	var all, yes bool
	cmd := &cobra.Command{
		Use:   "purge ID...|--all",
		Short: "Delete archived tasks for good",
		Long: `Delete archived tasks for good. Their invalidations will never run: make sure
the keys they name were dealt with some other way. On a terminal it asks
first; elsewhere it needs --yes.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := selection(args, all); err != nil {
				return err
			}
			insp, names, done, err := a.inspector(cmd, *queue)
			if err != nil {
				return err
			}
			defer done()
			what := fmt.Sprintf("%d archived tasks", len(args))
			if all {
				what = "every archived task in " + strings.Join(names, ", ")
			}
			if !yes {
				if err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), "purge", "Purge "+what+"? Their invalidations will never run."); err != nil {
					return err
				}
			}
			return deadAction{
				done: "purged",
				all:  insp.DeleteAllArchivedTasks,
				one:  insp.DeleteTask,
			}.apply(cmd.OutOrStdout(), insp, names, args, all)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every archived task (of --queue, or of every queue)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// confirm asks on a terminal; without one it refuses, since a script that
// forgot --yes must not act by accident. verb names the action ("purge").
func confirm(in io.Reader, prompt io.Writer, verb, question string) error {
	f, ok := in.(*os.File)
	if !ok || !isTerminal(f) {
		return usagef("refusing to %s without --yes: standard input is not a terminal", verb)
	}
	fmt.Fprintf(prompt, "%s [y/N] ", question)
	answer, _ := bufio.NewReader(in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("%s cancelled", verb)
}

// isTerminal reports whether f is an interactive terminal; /dev/null is a
// character device too, so the mode bits are not enough.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
