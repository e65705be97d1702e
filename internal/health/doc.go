// Package health serves the liveness and readiness endpoints of the worker
// and the exporter.
//
//   - /healthz answers 200 "ok" while the process serves HTTP at all. It
//     checks nothing else on purpose: an orchestrator restarts a process
//     whose liveness fails, and restarting a worker cures no Redis outage.
//   - /readyz answers 200 only when every named check passes within a short
//     timeout (default DefaultTimeout), else 503 naming the checks that
//     failed. Checks run concurrently, so one dead server costs one timeout,
//     not one per check.
//
// Checks are named by role ("queue Redis", "cache Redis"), never by URL: the
// endpoints are usually reachable without credentials, so a response says
// which dependency failed and how (timeout or error), while the full error,
// which may name hosts, goes to the logger only.
//
//	h := health.New(health.PingAll(map[string]redis.UniversalClient{
//		"queue Redis": queue,
//		"cache Redis": cache,
//	}), health.WithLogger(log))
//	mux := http.NewServeMux()
//	mux.Handle("/healthz", h)
//	mux.Handle("/readyz", h)
//
// On a Redis Cluster client the ping goes to every master: a worker whose
// family scans cannot reach one master is not ready.
package health
