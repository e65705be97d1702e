// Package queuestats exports the task counts of asynq queues as Prometheus
// metrics: per queue, how many tasks are pending, active, scheduled, waiting
// to retry, archived (the dead letter) and completed, and how long the
// oldest pending task has waited.
//
// Reading them costs Redis work (a Lua script per queue, plus memory
// sampling), so they come from ONE process per queue Redis: the `invalidator
// exporter` command. If every worker of a fleet exported them, each scrape
// would scan Redis once per worker, and the fleet's dashboards would sum N
// copies of the same numbers. Within that process a Collector refreshes at
// most once per MinInterval however many scrapers ask, never runs two
// refreshes at once, and never holds a scrape longer than Timeout.
//
//	c, err := queuestats.New(queuestats.Config{Client: queueRedis, Logger: log})
//	if err != nil {
//		return err
//	}
//	reg := prometheus.NewRegistry()
//	if err := reg.Register(c); err != nil {
//		return err
//	}
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Metrics (labels in braces):
//
//	invalidator_queue_tasks{queue,state}        state: pending, active, scheduled, retry, archived, completed, aggregating
//	invalidator_queue_latency_seconds{queue}    age of the oldest pending task; 0 when none is pending
//	invalidator_queue_paused{queue}             1 while the queue is paused
//	invalidator_queue_memory_bytes{queue}       Redis memory of the queue and its tasks (sampled estimate)
//	invalidator_queue_processed_total{queue}    tasks processed, all time, whole fleet
//	invalidator_queue_failed_total{queue}       failed runs, all time, whole fleet
//	invalidator_dead_letter_recorded_tasks{queue}  dead-lettered tasks in invalidator's record, which nothing trims
//	invalidator_queue_archive_cap{queue}        how many archived tasks asynq keeps (9,999); it drops the oldest beyond
//	invalidator_queue_stats_up                  1 if the last refresh succeeded, else 0 and no per-queue series
//
// With Config.Queues empty, every queue asynq knows on that Redis is
// exported; list queues explicitly to export zeros for a queue that nothing
// has been enqueued on yet, so alerts and dashboards need no absent().
package queuestats
