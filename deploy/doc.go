// Package deploy holds no code: it holds the files to run invalidator in
// production, and a test that keeps them in step with the code.
//
//   - invalidator-worker.service, invalidator-exporter.service: systemd units
//   - Dockerfile: the worker image (distroless, non-root)
//   - prometheus-rules.yaml: example alerts on the worker's and the
//     exporter's metrics
//
// See README.md. The test parses the rules and fails when an alert names a
// metric that neither worker.NewMetrics nor the queue exporter registers:
//
//	go test ./deploy/
package deploy
