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
// See README.md. The alert rules are checked against the registered metrics
// by cmd/invalidator/prometheus_rules_test.go (the exporter is internal to
// the CLI). The tests here check the Dockerfile and the units, and that
// compose.yaml and kubernetes.yaml give a worker more time to stop than its
// --shutdown-timeout:
//
//	go test ./deploy/
package deploy
