package deploy_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// The Dockerfile and the units keep the properties the issue asks for.
func TestDeployFiles(t *testing.T) {
	t.Parallel()
	read := func(name string) string {
		b, err := os.ReadFile(name)
		require.NoError(t, err)
		return string(b)
	}
	docker := read("Dockerfile")
	for _, want := range []string{
		"FROM golang:1.26 AS build", "CGO_ENABLED=0", "-trimpath", `-ldflags="-s -w -X main.buildVersion=${VERSION}"`,
		"FROM gcr.io/distroless/static-debian12:nonroot", "USER nonroot",
		`ENTRYPOINT ["/invalidator"]`, `CMD ["worker"]`, "EXPOSE 9464",
	} {
		require.Contains(t, docker, want)
	}
	require.NotRegexp(t, `(?m)^(CMD|ENTRYPOINT) [^\[]`, docker, "exec form only: there is no shell")

	unit := read("invalidator-worker.service")
	for _, want := range []string{
		"User=invalidator", "EnvironmentFile=/etc/invalidator/env", "Restart=on-failure",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
		"KillSignal=SIGTERM", "ExecReload=/bin/kill -HUP $MAINPID", "TimeoutStopSec=30s",
	} {
		require.Contains(t, unit, want)
	}
	require.NotRegexp(t, `(?m)^ExecStart=.*redis`, unit, "no URL (and password) on the command line")

	relay := read("invalidator-relay.service")
	for _, want := range []string{
		"User=invalidator", "EnvironmentFile=/etc/invalidator/relay.env", "ExecStart=/usr/local/bin/invalidator relay",
		"Restart=on-failure", "RestartPreventExitStatus=2", "NoNewPrivileges=yes", "ProtectSystem=strict", "KillSignal=SIGTERM",
	} {
		require.Contains(t, relay, want)
	}
	require.NotRegexp(t, `(?m)^ExecStart=.*(redis|postgres|dsn)`, relay, "no DSN (and password) on the command line")
}
