package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"
)

// queueStats is one row of `invalidator queues`.
type queueStats struct {
	Queue     string `json:"queue"`
	Paused    bool   `json:"paused"`
	Pending   int    `json:"pending"`
	Active    int    `json:"active"`
	Scheduled int    `json:"scheduled"`
	Retry     int    `json:"retry"`
	Archived  int    `json:"archived"`
	Processed int    `json:"processed"` // all time
	Failed    int    `json:"failed"`    // all time
}

func newQueuesCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "queues",
		Short: "Show task counts per queue",
		Long: `Show, for every queue in the queue Redis, how many tasks are pending, active,
scheduled, waiting to retry and archived (the dead letter), and how many were
processed and failed in all.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rdb, err := a.queueRedis(cmd.Context())
			if err != nil {
				return err
			}
			defer rdb.Close()
			insp := asynq.NewInspectorFromRedisClient(rdb)
			names, err := insp.Queues()
			if err != nil {
				return fmt.Errorf("list queues: %w", err)
			}
			slices.Sort(names)
			rows := make([]queueStats, 0, len(names))
			for _, q := range names {
				info, err := insp.GetQueueInfo(q)
				if err != nil {
					return fmt.Errorf("queue %q: %w", q, err)
				}
				rows = append(rows, queueStats{
					Queue: q, Paused: info.Paused, Pending: info.Pending, Active: info.Active,
					Scheduled: info.Scheduled, Retry: info.Retry, Archived: info.Archived,
					Processed: info.ProcessedTotal, Failed: info.FailedTotal,
				})
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(rows)
			}
			if len(rows) == 0 {
				_, err := fmt.Fprintln(out, "no queues yet: nothing has been enqueued on this Redis")
				return err
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "QUEUE\tPENDING\tACTIVE\tSCHEDULED\tRETRY\tARCHIVED\tPROCESSED\tFAILED\t")
			for _, r := range rows {
				name := r.Queue
				if r.Paused {
					name += " (paused)"
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", name, r.Pending, r.Active,
					r.Scheduled, r.Retry, r.Archived, r.Processed, r.Failed)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}
