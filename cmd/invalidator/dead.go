package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/invalidator/invalidator/tasks"
	"github.com/invalidator/invalidator/worker"
)

// deadTask is one row of `invalidator dead list`.
type deadTask struct {
	ID     string `json:"id"`
	Queue  string `json:"queue"`
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
	// FailedAt is null when no attempt failed: an operator archived it.
	FailedAt *time.Time `json:"failed_at"`
	// ArchivedAt is null until the task is in invalidator's record.
	ArchivedAt *time.Time `json:"archived_at"`
	Retried    int        `json:"retried"`
	Summary    string     `json:"summary"`
	// InArchive: asynq's archive holds the task (the dashboard shows it).
	// InRecord: invalidator's record does, which nothing trims. Only
	// InRecord: asynq trimmed it from its archive, or it was deleted there
	// by other means than `dead purge`.
	InArchive bool `json:"in_archive"`
	InRecord  bool `json:"in_record"`
}

func newDeadCmd(a *app) *cobra.Command {
	var queue string
	cmd := &cobra.Command{
		Use:   "dead",
		Short: "Inspect, retry and purge the dead letter",
		Long: `Tasks that failed their last retry, and poison tasks that can never succeed,
are dead-lettered: asynq archives them, and the worker also writes them to a
record of invalidator's own (the hash invalidator:dead:{<queue>} in the queue
Redis). asynq keeps at most 9,999 archived tasks per queue, for 90 days, and
drops older ones without a trace; the record keeps every task until it is
retried or purged. These commands see both, one row per task.

Invalidations are idempotent, so retrying one is always safe.`,
	}
	cmd.PersistentFlags().StringVar(&queue, "queue", "", "only this queue (default: every queue)")
	cmd.AddCommand(newDeadListCmd(a, &queue), newDeadShowCmd(a, &queue), newDeadRetryCmd(a, &queue), newDeadPurgeCmd(a, &queue))
	return group(cmd)
}

// deadEnv is what the dead commands work with.
type deadEnv struct {
	ctx    context.Context
	rdb    redis.UniversalClient
	insp   *asynq.Inspector
	aq     *asynq.Client
	queues []string // sorted
}

// openDead connects to the queue Redis and returns the queues to work on
// (only, or every queue) and a function that closes the connection.
func (a *app) openDead(cmd *cobra.Command, only string) (*deadEnv, func(), error) {
	ctx := cmd.Context()
	rdb, err := a.queueRedis(ctx)
	if err != nil {
		return nil, nil, err
	}
	done := func() { _ = rdb.Close() }
	e := &deadEnv{ctx: ctx, rdb: rdb, insp: asynq.NewInspectorFromRedisClient(rdb), aq: asynq.NewClientFromRedisClient(rdb)}
	names, err := e.insp.Queues()
	if err != nil {
		done()
		return nil, nil, fmt.Errorf("list queues: %w", err)
	}
	slices.Sort(names)
	if only != "" {
		if !slices.Contains(names, only) {
			done()
			return nil, nil, usagef("queue %q not found (queues: %s)", only, strings.Join(names, ", "))
		}
		names = []string{only}
	}
	e.queues = names
	return e, done, nil
}

// queueDead is one queue's dead letter: asynq's archive and the record.
type queueDead struct {
	queue    string
	archived []*asynq.TaskInfo          // asynq's archive, oldest first
	record   map[string]worker.DeadTask // invalidator's record, by task ID
	// late are record entries of tasks archived after the archive was
	// read; trimmed are those asynq has no task for any more.
	late, trimmed []worker.DeadTask
}

// read reads the dead letter of one queue.
func (e *deadEnv) read(queue string) (*queueDead, error) {
	d := &queueDead{queue: queue, record: map[string]worker.DeadTask{}}
	inArchive := map[string]bool{}
	for page := 1; ; page++ {
		infos, err := e.insp.ListArchivedTasks(queue, asynq.PageSize(500), asynq.Page(page))
		if err != nil {
			return nil, fmt.Errorf("list archived tasks of queue %q: %w", queue, err)
		}
		for _, ti := range infos {
			if !inArchive[ti.ID] { // pages shift while tasks come and go
				inArchive[ti.ID] = true
				d.archived = append(d.archived, ti)
			}
		}
		if len(infos) < 500 {
			break
		}
	}
	rec, err := worker.ReadDeadLetter(e.ctx, e.rdb, queue)
	if err != nil {
		return nil, err
	}
	var others []worker.DeadTask
	for _, t := range rec {
		d.record[t.ID] = t
		if !inArchive[t.ID] {
			others = append(others, t)
		}
	}
	ids := make([]string, len(others))
	for i, t := range others {
		ids[i] = t.ID
	}
	states, err := worker.AsynqTaskStates(e.ctx, e.rdb, queue, ids)
	if err != nil {
		return nil, err
	}
	for i, t := range others {
		switch states[i] {
		case "":
			d.trimmed = append(d.trimmed, t)
		case "archived":
			d.late = append(d.late, t)
		default:
			// asynq runs it again (put back by other means, or recorded
			// just before asynq archives it): not dead now.
		}
	}
	slices.SortStableFunc(d.trimmed, func(a, b worker.DeadTask) int { return a.ArchivedAt.Compare(b.ArchivedAt) })
	return d, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// rows are the queue's dead tasks, one per task.
func (d *queueDead) rows() []deadTask {
	rows := make([]deadTask, 0, len(d.archived)+len(d.late)+len(d.trimmed))
	for _, ti := range d.archived {
		var rec *worker.DeadTask
		if r, ok := d.record[ti.ID]; ok {
			rec = &r
		}
		rows = append(rows, archivedRow(d.queue, ti, rec))
	}
	for _, t := range d.late {
		rows = append(rows, recordRow(t, true))
	}
	for _, t := range d.trimmed {
		rows = append(rows, recordRow(t, false))
	}
	return rows
}

// archivedRow is the row of a task in asynq's archive; rec is its record
// entry, nil when the record has none.
func archivedRow(queue string, ti *asynq.TaskInfo, rec *worker.DeadTask) deadTask {
	r := deadTask{ID: ti.ID, Queue: queue, Kind: ti.Type, Reason: ti.LastErr, FailedAt: timePtr(ti.LastFailedAt),
		Retried: ti.Retried, Summary: tasks.Describe(ti.Type, ti.Payload), InArchive: true, InRecord: rec != nil}
	if rec != nil {
		r.ArchivedAt = timePtr(rec.ArchivedAt)
	}
	if r.Reason == "" {
		// asynq keeps no reason for a task an operator archived.
		r.Reason = worker.ReasonArchivedByOperator
	}
	return r
}

// keys are the keys of a key delete, nil for other kinds or a payload
// that does not decode.
func (r deadRef) keys() []string {
	kind, payload := "", []byte(nil)
	switch {
	case r.archived != nil:
		kind, payload = r.archived.Type, r.archived.Payload
	case r.rec != nil:
		kind, payload = r.rec.Kind, r.rec.Payload
	}
	if t, err := tasks.Unmarshal(kind, payload); err == nil {
		if dk, ok := t.(tasks.DeleteKeys); ok {
			return dk.Keys
		}
	}
	return nil
}

// row is the row of one dead task found by ID.
func (r deadRef) row() deadTask {
	if r.archived != nil {
		return archivedRow(r.queue, r.archived, r.rec)
	}
	return recordRow(*r.rec, false)
}

func recordRow(t worker.DeadTask, inArchive bool) deadTask {
	r := deadTask{ID: t.ID, Queue: t.Queue, Kind: t.Kind, Reason: t.Reason, FailedAt: timePtr(t.FailedAt),
		ArchivedAt: timePtr(t.ArchivedAt), Retried: t.Retried, InArchive: inArchive, InRecord: true}
	if t.Undecodable != nil {
		r.Reason, r.Summary = t.Undecodable.Error(), "-"
		return r
	}
	r.Summary = tasks.Describe(t.Kind, t.Payload)
	return r
}

func newDeadListCmd(a *app, queue *string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead-lettered tasks with their reason",
		Long: `List dead-lettered tasks with their reason: asynq's archive and invalidator's
record, one row per task. KEPT IN says where a task is: "archive+record"
normally; "record" for a task asynq trimmed from its archive (beyond 9,999
per queue, or older than 90 days), which dead retry and dead purge handle like
the others; "archive" for a task archived by an operator or by asynq itself
that a worker has not copied into the record yet (it does within seconds).
FAILED AT (UTC) is "-" for a task that never failed (an operator archived it).

The table keeps to 120 columns: IDs are shown by their shortest unique prefix
(at least 8 characters), which retry, purge and show accept; each task's reason
is on a line of its own below it. 'invalidator dead show ID' prints one task
in full.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, done, err := a.openDead(cmd, *queue)
			if err != nil {
				return err
			}
			defer done()
			rows := []deadTask{}
			onlyRecord := 0
			for _, q := range e.queues {
				d, err := e.read(q)
				if err != nil {
					return err
				}
				rows = append(rows, d.rows()...)
				onlyRecord += len(d.trimmed)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(rows)
			}
			if len(rows) == 0 {
				_, err := fmt.Fprintln(out, "the dead letter is empty")
				return err
			}
			if err := writeDeadTable(out, rows); err != nil {
				return err
			}
			if onlyRecord > 0 {
				_, err = fmt.Fprintf(out, "\n%d of %s %s kept only in invalidator's record: asynq trimmed %s from its archive (or %s deleted there).\n",
					onlyRecord, tasksN(len(rows)), plural(onlyRecord, "is", "are"), plural(onlyRecord, "it", "them"), plural(onlyRecord, "it was", "they were"))
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

// deadListWidth is the width dead list keeps to.
const deadListWidth = 120

// shortIDLen is the shortest ID prefix dead list shows; minIDPrefix the
// shortest that retry, purge and show resolve (shorter ones would match by
// accident too often for a purge).
const (
	shortIDLen  = 8
	minIDPrefix = 4
)

// writeDeadTable writes rows as a table of at most deadListWidth columns:
// one line per task, then its reason, indented and wrapped, on at most
// three lines. Only the summary and a very long reason are cut; dead show
// prints them whole.
func writeDeadTable(w io.Writer, rows []deadTask) error {
	ids := shortIDs(rows)
	header := []string{"ID", "QUEUE", "KIND", "FAILED AT (UTC)", "KEPT IN", "SUMMARY"}
	cells := make([][]string, len(rows))
	for i, r := range rows {
		failedAt := "-"
		if r.FailedAt != nil {
			failedAt = r.FailedAt.UTC().Format("2006-01-02 15:04")
		}
		cells[i] = []string{ids[r.ID], r.Queue, r.Kind, failedAt, keptIn(r), r.Summary}
	}
	const gap = 2
	widths := make([]int, len(header))
	for c, h := range header {
		widths[c] = len([]rune(h))
		for _, row := range cells {
			widths[c] = max(widths[c], len([]rune(row[c])))
		}
	}
	last := len(header) - 1
	used := 0
	for c := range last {
		used += widths[c] + gap
	}
	widths[last] = max(deadListWidth-used, len(header[last]))
	line := func(row []string) string {
		var b strings.Builder
		for c, v := range row {
			if c == last {
				b.WriteString(oneLine(v, widths[c]))
				break
			}
			b.WriteString(v)
			b.WriteString(strings.Repeat(" ", widths[c]-len([]rune(v))+gap))
		}
		return strings.TrimRight(b.String(), " ")
	}
	var b strings.Builder
	b.WriteString(line(header) + "\n")
	const indent = "    reason: "
	for i, r := range rows {
		b.WriteString(line(cells[i]) + "\n")
		for j, l := range wrap(r.Reason, deadListWidth-len(indent), 3) {
			if j == 0 {
				b.WriteString(indent + l + "\n")
			} else {
				b.WriteString(strings.Repeat(" ", len(indent)) + l + "\n")
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// shortIDs maps each row's ID to its shortest prefix of at least
// shortIDLen characters that no other row's ID shares.
func shortIDs(rows []deadTask) map[string]string {
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		n := min(shortIDLen, len(r.ID))
		for ; n < len(r.ID); n++ {
			unique := true
			for _, o := range rows {
				if o.ID != r.ID && strings.HasPrefix(o.ID, r.ID[:n]) {
					unique = false
					break
				}
			}
			if unique {
				break
			}
		}
		out[r.ID] = r.ID[:n]
	}
	return out
}

// wrap splits s into lines of at most width runes at spaces (a longer word
// is cut), and keeps at most maxLines, the last ending in "…" if cut.
func wrap(s string, width, maxLines int) []string {
	var lines []string
	var cur []rune
	for _, word := range strings.Fields(s) {
		w := []rune(word)
		for len(w) > 0 {
			switch {
			case len(cur) == 0 && len(w) <= width:
				cur, w = w, nil
			case len(cur) > 0 && len(cur)+1+len(w) <= width:
				cur = append(append(cur, ' '), w...)
				w = nil
			case len(cur) > 0:
				lines, cur = append(lines, string(cur)), nil
			default: // a word longer than a line
				lines, w = append(lines, string(w[:width])), w[width:]
			}
		}
	}
	if len(cur) > 0 {
		lines = append(lines, string(cur))
	}
	if len(lines) > maxLines {
		lines = lines[:maxLines]
		r := []rune(lines[maxLines-1])
		if len(r) >= width {
			r = r[:width-1]
		}
		lines[maxLines-1] = string(r) + "…"
	}
	return lines
}

// tasksN is "1 task", "2 tasks".
func tasksN(n int) string { return fmt.Sprintf("%d %s", n, plural(n, "task", "tasks")) }

func keptIn(r deadTask) string {
	switch {
	case r.InArchive && r.InRecord:
		return "archive+record"
	case r.InArchive:
		return "archive"
	}
	return "record"
}

// oneLine keeps a table cell on one line and at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func newDeadShowCmd(a *app, queue *string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Print one dead-lettered task in full",
		Long: `Print one dead-lettered task in full: its reason and summary uncut, where it
is kept, when it failed and was archived. ID may be a unique prefix of at
least 4 characters, as dead list shows it.`,
		Example: `  invalidator dead show 6f1c0c1e
  invalidator dead show 6f1c0c1e --json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, done, err := a.openDead(cmd, *queue)
			if err != nil {
				return err
			}
			defer done()
			r, err := e.lookup(args[0])
			if err != nil {
				return err
			}
			row := r.row()
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(row)
			}
			at := func(t *time.Time) string {
				if t == nil {
					return "-"
				}
				return t.UTC().Format(time.RFC3339)
			}
			var b strings.Builder
			for _, f := range [][2]string{
				{"ID", row.ID}, {"Queue", row.Queue}, {"Kind", row.Kind}, {"Kept in", keptIn(row)},
				{"Failed at", at(row.FailedAt)}, {"Archived at", at(row.ArchivedAt)},
				{"Retried", fmt.Sprint(row.Retried)}, {"Summary", row.Summary}, {"Reason", row.Reason},
			} {
				fmt.Fprintf(&b, "%-12s %s\n", f[0]+":", f[1])
			}
			// The summary names the first keys only; here is every one,
			// quoted, since a key is bytes.
			if keys := r.keys(); len(keys) > 0 {
				fmt.Fprintf(&b, "Keys:\n")
				for _, k := range keys {
					fmt.Fprintf(&b, "  %q\n", k)
				}
			}
			_, err = io.WriteString(out, b.String())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object, as one row of dead list --json")
	return cmd
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

// deadRef is one dead task to retry or purge: where it is, and its record
// entry if the record has one.
type deadRef struct {
	queue, id string
	archived  *asynq.TaskInfo  // nil: not in asynq's archive
	rec       *worker.DeadTask // nil: not in the record
}

// find locates the task with this ID: in asynq's archive, in a record, or
// both. A task asynq holds in another state is an error: it is not dead.
func (e *deadEnv) find(id string) (deadRef, error) {
	ti, err := findTask(e.insp, e.queues, id)
	if err != nil {
		return deadRef{}, fmt.Errorf("task %s: %w", id, err)
	}
	if ti != nil && ti.State != asynq.TaskStateArchived {
		return deadRef{}, fmt.Errorf("task %s in queue %q is %s, not archived", id, ti.Queue, ti.State)
	}
	queues := e.queues
	if ti != nil {
		queues = []string{ti.Queue}
	}
	for _, q := range queues {
		rec, ok, err := worker.ReadDeadTask(e.ctx, e.rdb, q, id)
		if err != nil {
			return deadRef{}, err
		}
		if ok {
			return deadRef{queue: q, id: id, archived: ti, rec: &rec}, nil
		}
	}
	if ti == nil {
		return deadRef{}, fmt.Errorf("task %s: %w", id, errNotDead)
	}
	return deadRef{queue: ti.Queue, id: id, archived: ti}, nil
}

// errNotDead is a task ID (or prefix) that no queue's dead letter holds.
var errNotDead = errors.New("is in no queue's dead letter")

// lookup is find for a full task ID or a unique prefix of one (at least
// minIDPrefix characters), as dead list shows them.
func (e *deadEnv) lookup(id string) (deadRef, error) {
	r, err := e.find(id)
	if !errors.Is(err, errNotDead) || len(id) < minIDPrefix {
		return r, err
	}
	var matches []string
	for _, q := range e.queues {
		d, err := e.read(q)
		if err != nil {
			return deadRef{}, err
		}
		for _, row := range d.rows() {
			if strings.HasPrefix(row.ID, id) && !slices.Contains(matches, row.ID) {
				matches = append(matches, row.ID)
			}
		}
	}
	switch len(matches) {
	case 0:
		return deadRef{}, err
	case 1:
		return e.find(matches[0])
	}
	slices.Sort(matches)
	return deadRef{}, usagef("task ID prefix %s is ambiguous: it starts %s (%s); give more of the ID",
		id, tasksN(len(matches)), strings.Join(matches, ", "))
}

// refs are the queue's dead tasks, one per task.
func (d *queueDead) refs() []deadRef {
	refs := make([]deadRef, 0, len(d.archived)+len(d.late)+len(d.trimmed))
	for _, ti := range d.archived {
		r := deadRef{queue: d.queue, id: ti.ID, archived: ti}
		if rec, ok := d.record[ti.ID]; ok {
			r.rec = &rec
		}
		refs = append(refs, r)
	}
	for _, ts := range [][]worker.DeadTask{d.late, d.trimmed} {
		for _, t := range ts {
			refs = append(refs, deadRef{queue: d.queue, id: t.ID, rec: &t})
		}
	}
	return refs
}

// retryResult counts what a retry did.
type retryResult struct {
	mu         sync.Mutex // guards the fields below
	n          int        // tasks put back
	fromRecord int        // of them, enqueued again from the record
	drop       []worker.DeadTask
	errs       []error
}

func (res *retryResult) done(r deadRef, fromRecord bool, err error) {
	res.mu.Lock()
	defer res.mu.Unlock()
	if err != nil {
		res.errs = append(res.errs, fmt.Errorf("task %s in queue %q: %w", r.id, r.queue, err))
		return
	}
	res.n++
	if fromRecord {
		res.fromRecord++
	}
	if r.rec != nil {
		res.drop = append(res.drop, *r.rec)
	}
}

// retry puts the dead tasks of one queue back to run, then drops their
// record entries: put back first, so that a crash in between repeats a
// retry (harmless) rather than loses a task. Tasks still in asynq's
// archive go back in batches; the others are enqueued again from the
// record, RequeueParallelism at a time.
func (e *deadEnv) retry(queue string, refs []deadRef, res *retryResult) {
	var archived []deadRef
	var requeue []deadRef
	for _, r := range refs {
		if r.archived != nil {
			archived = append(archived, r)
		} else {
			requeue = append(requeue, r)
		}
	}
	ids := make([]string, len(archived))
	for i, r := range archived {
		ids[i] = r.id
	}
	ran, err := worker.RunArchivedTasks(e.ctx, e.rdb, queue, ids)
	for i, r := range archived {
		switch {
		case i >= len(ran):
			res.done(r, false, err)
		case ran[i]:
			res.done(r, false, nil)
		case r.rec != nil:
			requeue = append(requeue, r) // trimmed since it was read
		default:
			res.done(r, false, errors.New("it left asynq's archive since it was read (retried or purged by someone else?)"))
		}
	}

	sem := make(chan struct{}, worker.RequeueParallelism)
	var wg sync.WaitGroup
	for _, r := range requeue {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fromRecord, err := e.requeue(r)
			res.done(r, fromRecord, err)
		})
	}
	wg.Wait()
}

// requeue enqueues a task of the record again under its own ID;
// fromRecord is false when asynq turned out to have the task after all.
func (e *deadEnv) requeue(r deadRef) (fromRecord bool, err error) {
	err = worker.RequeueDeadTask(e.ctx, e.aq, e.rdb, *r.rec)
	if !errors.Is(err, asynq.ErrTaskIDConflict) {
		return err == nil, err
	}
	// asynq has the task again: archived anew since it was read, or put
	// back by someone else.
	// If it is not archived, it is pending or running already.
	_, err = worker.RunArchivedTasks(e.ctx, e.rdb, r.queue, []string{r.id})
	return false, err
}

// retryAll retries refs, queue by queue, and drops their record entries.
func (e *deadEnv) retryAll(refs []deadRef) *retryResult {
	res := &retryResult{}
	byQueue := map[string][]deadRef{}
	for _, r := range refs {
		byQueue[r.queue] = append(byQueue[r.queue], r)
	}
	for _, q := range slices.Sorted(maps.Keys(byQueue)) {
		res.drop = nil
		e.retry(q, byQueue[q], res)
		if _, err := worker.DropDeadTasks(e.ctx, e.rdb, q, res.drop); err != nil {
			res.errs = append(res.errs, fmt.Errorf("put back, but still in the record (a second retry repeats them): %w", err))
		}
	}
	return res
}

func newDeadRetryCmd(a *app, queue *string) *cobra.Command {
	var all, force bool
	cmd := &cobra.Command{
		Use:   "retry ID...|--all",
		Short: "Put dead-lettered tasks back on their queue to run again",
		Long: `Put dead-lettered tasks back on their queue to run again.

A task still in asynq's archive gets one more attempt (asynq does not reset
its retry count). A task asynq trimmed from its archive is enqueued again from
invalidator's record, under its own task ID and with its full retry budget.
Either way it leaves the record once it is back on its queue; if it fails
again, it is dead-lettered again.

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
			e, done, err := a.openDead(cmd, *queue)
			if err != nil {
				return err
			}
			defer done()
			var refs []deadRef
			var errs []error
			if all {
				for _, q := range e.queues {
					d, err := e.read(q)
					if err != nil {
						return err
					}
					refs = append(refs, d.refs()...)
				}
			} else {
				for _, id := range args {
					r, err := e.lookup(id)
					if err != nil {
						errs = append(errs, err)
						continue
					}
					refs = append(refs, r)
				}
			}
			if force {
				forced := refs[:0]
				for _, r := range refs {
					if err := e.force(r); err != nil {
						errs = append(errs, fmt.Errorf("task %s in queue %q: %w", r.id, r.queue, err))
						continue
					}
					forced = append(forced, r)
				}
				refs = forced
			}
			res := e.retryAll(refs)
			errs = append(errs, res.errs...)
			msg := tasksN(res.n) + " put back to run"
			switch {
			case res.fromRecord == 1 && res.n == 1:
				msg += " (enqueued again from invalidator's record: asynq had trimmed it)"
			case res.fromRecord > 0:
				msg += fmt.Sprintf(" (%d of them enqueued again from invalidator's record: asynq had trimmed %s)",
					res.fromRecord, plural(res.fromRecord, "it", "them"))
			}
			// Nothing done and an error: the error says it all.
			if res.n > 0 || len(errs) == 0 {
				if _, err := fmt.Fprintln(cmd.OutOrStdout(), msg); err != nil {
					errs = append(errs, err)
				}
			}
			return joinDeadErrors(errs)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every dead-lettered task (of --queue, or of every queue)")
	cmd.Flags().BoolVar(&force, "force", false, "lift the family's max_keys for these family deletes")
	return cmd
}

// force lifts max_keys for the family delete r belongs to, before it is
// put back: the checkpoint is named by the task's ID or by its
// continuation header (tasks.HeaderScan, see tasks.ScanID), which the archive and the record both keep.
func (e *deadEnv) force(r deadRef) error {
	kind, headers := "", map[string]string(nil)
	switch {
	case r.archived != nil:
		kind, headers = r.archived.Type, r.archived.Headers
	case r.rec != nil:
		kind, headers = r.rec.Kind, r.rec.Headers
	}
	if kind != tasks.KindDeleteFamily {
		return usagef("--force applies to family deletes (%s), and this task is %s", tasks.KindDeleteFamily, kind)
	}
	return worker.ForceFamilyDelete(e.ctx, e.rdb, tasks.ScanID(r.id, headers), 0)
}

// joinDeadErrors joins the errors of single tasks; a usage error among
// them keeps its exit code.
func joinDeadErrors(errs []error) error {
	for _, err := range errs {
		var ue *usageError
		if errors.As(err, &ue) {
			return err
		}
	}
	return errors.Join(errs...)
}

func newDeadPurgeCmd(a *app, queue *string) *cobra.Command {
	var all, yes bool
	cmd := &cobra.Command{
		Use:   "purge ID...|--all",
		Short: "Delete dead-lettered tasks for good",
		Long: `Delete dead-lettered tasks for good, from asynq's archive and from
invalidator's record. Their invalidations will never run: make sure the keys
they name were dealt with some other way. On a terminal it asks first;
elsewhere it needs --yes.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := selection(args, all); err != nil {
				return err
			}
			e, done, err := a.openDead(cmd, *queue)
			if err != nil {
				return err
			}
			defer done()
			what := tasksN(len(args)) + " of the dead letter"
			if all {
				what = "every dead-lettered task in " + strings.Join(e.queues, ", ")
			}
			if !yes {
				if err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), "purge", "Purge "+what+"? Their invalidations will never run."); err != nil {
					return err
				}
			}
			n := 0
			var errs []error
			if all {
				for _, q := range e.queues {
					k, err := e.purgeQueue(q)
					n += k
					if err != nil {
						errs = append(errs, fmt.Errorf("queue %q: %w", q, err))
						break
					}
				}
			} else {
				for _, id := range args {
					if err := e.purgeOne(id); err != nil {
						errs = append(errs, err)
						continue
					}
					n++
				}
			}
			// Nothing done and an error: the error says it all.
			if n > 0 || len(errs) == 0 {
				if _, err := fmt.Fprintf(cmd.OutOrStdout(), "%s purged\n", tasksN(n)); err != nil {
					errs = append(errs, err)
				}
			}
			return joinDeadErrors(errs)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every dead-lettered task (of --queue, or of every queue)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// purgeQueue deletes the queue's dead letter: asynq's archive, and the
// record entries read before, so that a task that dies meanwhile stays
// in the record.
func (e *deadEnv) purgeQueue(queue string) (int, error) {
	d, err := e.read(queue)
	if err != nil {
		return 0, err
	}
	n, err := e.insp.DeleteAllArchivedTasks(queue)
	if err != nil {
		return 0, err
	}
	recs := slices.Concat(d.late, d.trimmed)
	for _, ti := range d.archived {
		if rec, ok := d.record[ti.ID]; ok {
			recs = append(recs, rec)
		}
	}
	if _, err := worker.DropDeadTasks(e.ctx, e.rdb, queue, recs); err != nil {
		return n, err
	}
	return n + len(d.trimmed), nil
}

// purgeOne deletes one task from asynq's archive and from the record.
func (e *deadEnv) purgeOne(id string) error {
	r, err := e.lookup(id)
	if err != nil {
		return err
	}
	id = r.id
	if r.archived != nil {
		if err := e.insp.DeleteTask(r.queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return fmt.Errorf("task %s in queue %q: %w", id, r.queue, err)
		}
	}
	if r.rec != nil {
		if _, err := worker.PurgeDeadTasks(e.ctx, e.rdb, r.queue, []string{id}); err != nil {
			return err
		}
	}
	return nil
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
