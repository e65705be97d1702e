package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/worker"
)

// familyDeleteResult is the --wait --json output of enqueue family.
type familyDeleteResult struct {
	TaskIDs []string `json:"task_ids"`
	// Mode is the family's mode: in "shadow" Deleted counts the keys that
	// would have been deleted and nothing was; in "off" nothing ran.
	Mode       string  `json:"mode"`
	Scanned    int64   `json:"scanned"`
	Deleted    int64   `json:"deleted"`
	Seconds    float64 `json:"seconds"`
	KeysPerSec float64 `json:"keys_per_sec"`
}

// waitFamilyDelete follows a family delete through its checkpoint until it
// finishes, and fails if the task lands in the dead letter.
func (a *app) waitFamilyDelete(cmd *cobra.Command, o *enqueueOpts, id string) error {
	ctx := cmd.Context()
	rdb, err := a.queueRedis(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	policy, err := a.loadPolicy()
	if err != nil {
		return err
	}
	queues := policy.Queues()
	if o.queue != "" {
		queues = []string{o.queue}
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	errw := cmd.ErrOrStderr()
	f, isFile := fileOf(errw)
	tty := isFile && isTerminal(f)
	start := time.Now()
	lastLine, lost := time.Time{}, time.Time{}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		p, err := worker.FamilyDeleteProgress(ctx, rdb, id)
		if err != nil {
			return &unreachableError{err}
		}
		elapsed := time.Since(start)
		rate := float64(p.Deleted) / max(elapsed.Seconds(), 1e-3)
		if p.Finished {
			if tty {
				fmt.Fprint(errw, "\r\033[K")
			}
			if o.asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(familyDeleteResult{TaskIDs: []string{id}, Mode: p.Mode,
					Scanned: p.Scanned, Deleted: p.Deleted, Seconds: elapsed.Seconds(), KeysPerSec: rate})
			}
			var err error
			switch p.Mode {
			case "off":
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\nthe family is off in the worker's policy: nothing was deleted\n", id)
			case "shadow":
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\nshadow mode: %d keys would have been deleted (scanned %d) in %s; nothing was deleted\n",
					id, p.Deleted, p.Scanned, elapsed.Round(time.Millisecond))
			default:
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\ndeleted %d keys (scanned %d) in %s, %.0f keys/s\n",
					id, p.Deleted, p.Scanned, elapsed.Round(time.Millisecond), rate)
			}
			return err
		}
		// The scan runs in the first task or its latest continuation.
		running := []string{id}
		if p.Task != "" && p.Task != id {
			running = append(running, p.Task)
		}
		found := false
		for _, tid := range running {
			ti, err := findTask(insp, queues, tid)
			if err != nil || ti == nil {
				continue // a lookup error is retried on the next poll
			}
			found = true
			if ti.State == asynq.TaskStateArchived {
				if tty {
					fmt.Fprintln(errw)
				}
				return fmt.Errorf("family delete %s went to the dead letter after deleting %d keys: %s (see 'invalidator dead list')", tid, p.Deleted, ti.LastErr)
			}
		}
		// Neither task exists and no final counts came: the worker could
		// not record them (it logs why). Give up after a grace period.
		if found {
			lost = time.Time{}
		} else if lost.IsZero() {
			lost = time.Now()
		} else if time.Since(lost) > 5*time.Second {
			return fmt.Errorf("family delete %s: its tasks are gone but no final counts were recorded (last seen: %d deleted); check the worker log", id, p.Deleted)
		}
		status := fmt.Sprintf("scanned %d  deleted %d  %.0f keys/s  %s", p.Scanned, p.Deleted, rate, elapsed.Round(time.Second))
		if p.Nodes > 1 {
			status += fmt.Sprintf("  nodes done %d/%d", p.NodesDone, p.Nodes)
		}
		switch {
		case tty:
			fmt.Fprintf(errw, "\r\033[K%s", status)
		case !o.asJSON && time.Since(lastLine) >= 5*time.Second:
			fmt.Fprintln(errw, status)
			lastLine = time.Now()
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(errw)
			}
			return fmt.Errorf("stopped waiting for family delete %s (it goes on in the worker): %w", id, ctx.Err())
		case <-tick.C:
		}
	}
}
