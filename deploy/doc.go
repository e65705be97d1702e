// Package deploy holds no code: it holds the files to run invalidator in
// production, and a test that keeps them in step with the code.
//
//   - invalidator-worker.service, invalidator-exporter.service: systemd units
//   - Dockerfile: the worker image (distroless, non-root)
//   - compose.yaml: Redis, two workers, the exporter and the dashboard
//   - kubernetes.yaml: worker and exporter Deployments
//   - prometheus-rules.yaml: example alerts on the worker's and the
//     exporter's metrics
//
// See README.md. The tests parse the rules and fail when an alert names a
// metric that neither worker.NewMetrics nor the queue exporter registers,
// and check that compose.yaml and kubernetes.yaml give a worker more time
// to stop than its --shutdown-timeout:
//
//	go test ./deploy/
package deploy
