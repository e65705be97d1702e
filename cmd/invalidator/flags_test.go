package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every numeric and duration flag refuses values that mean nothing sensible,
// with a usage error that names the flag and the range it takes, before
// anything connects. The boundary values are accepted: with the queue Redis
// on a closed port, they get as far as connecting (exit 3).
func TestFlagsRefuseNonsense(t *testing.T) {
	t.Parallel()
	env := map[string]string{envRedisURL: "redis://127.0.0.1:1/0", envPolicy: writePolicy(t, paramsPolicy)}
	keys := []string{"enqueue", "keys", "k"}
	family := []string{"enqueue", "family", "user_profile", "id=1"}
	for _, tc := range []struct {
		args []string
		want string // in stderr, besides the flag's name; "" for an accepted value
	}{
		{append(keys, "--max-retry", "-5"), "0 or more"},
		{append(keys, "--max-retry", "-1"), "0 or more"}, // -1 was the "not given" value
		{append(keys, "--max-retry", "0"), ""},
		{append(keys, "--timeout", "-1s"), "at least 1s"},
		{append(keys, "--timeout", "0"), "at least 1s"},
		{append(keys, "--timeout", "500ms"), "whole number of seconds"},  // asynq: no timeout, i.e. 30 min
		{append(keys, "--timeout", "1500ms"), "whole number of seconds"}, // asynq: 1s
		{append(keys, "--timeout", "1s"), ""},
		{append(family, "--yes", "--max-retry", "-5"), "0 or more"},
		{append(family, "--confirm-above", "-1"), "0 or more"},
		{append(family, "--confirm-above", "0"), ""},
		{[]string{"enqueue", "bump", "user_feed", "user=1", "--timeout", "-1s"}, "at least 1s"},
		{[]string{"enqueue", "event", "user.updated", "id=1", "--max-retry", "-5"}, "0 or more"},

		// The worker's flags are worker.Config's fields: 0 is the default,
		// and worker.Config.Validate decides the rest.
		{[]string{"worker", "--concurrency", "-1"}, "negative"},
		{[]string{"worker", "--concurrency", "0"}, ""},
		{[]string{"worker", "--poll-interval", "0"}, ""},
		{[]string{"worker", "--poll-interval", "-5ms"}, "negative"},
		{[]string{"worker", "--retry-check-interval", "-1ms"}, "negative"},
		{[]string{"worker", "--shutdown-timeout", "-1s"}, "negative"},
		{[]string{"worker", "--scan-count", "-1"}, "negative"},
		{[]string{"worker", "--scan-count", "0"}, ""},
		{[]string{"worker", "--safety-poll", "500ms"}, "1s..10s"},
		{[]string{"worker", "--safety-poll", "11s"}, "1s..10s"},
		{[]string{"worker", "--audit-rate", "-1"}, "0 or more"},
		{[]string{"worker", "--family-rate-limit", "-1"}, "0 or more"},
		{[]string{"worker", "--family-rate-limit", "NaN"}, "0 or more"},
		{[]string{"worker", "--family-rate-limit", "+Inf"}, "0 or more"},
		{[]string{"worker", "--family-rate-limit", "0"}, ""},

		{[]string{"exporter", "--timeout", "0"}, "positive"},
		{[]string{"exporter", "--refresh-interval", "-1s"}, "negative"},
		{[]string{"exporter", "--queues", "invalidator-standard\tx"}, "tab"},
		{[]string{"exporter", "--queues", "invalidator-standard, invalidator-critical"}, "starts with a space"},

		{[]string{"dev", "--duration", "-1s"}, "0 (run until Ctrl-C) or more"},
		{[]string{"dev", "--writers", "0"}, "at least 1"},
		{[]string{"dev", "--readers", "0"}, "at least 1"},
		{[]string{"dev", "--write-rate", "0"}, "above 0"},
		{[]string{"dev", "--write-rate", "NaN"}, "above 0"},
		{[]string{"dev", "--write-rate", "Inf"}, "above 0"},
		{[]string{"dev", "--source-dsn", "postgres://x@127.0.0.1:1/db"}, "needs --workload"},

		{[]string{"bench", "lag", "--rate", "0"}, "at least 1"},
		{[]string{"bench", "lag", "--rate", "-5"}, "at least 1"},
		{[]string{"bench", "lag", "--duration", "0"}, "above 0"},
		{[]string{"bench", "lag", "--workers", "-1"}, "or more"},
		// As the worker's: worker.Config.Validate decides.
		{[]string{"bench", "lag", "--poll-interval", "-1ms"}, "-1ms is negative"},
		{[]string{"bench", "idle", "--poll-interval", "-1ms"}, "-1ms is negative"},
		{[]string{"bench", "lag", "--poll-interval", "0"}, ""},
		{[]string{"bench", "throughput", "--producers", "0"}, "at least 1"},
		{[]string{"bench", "throughput", "--keys-per-call", "0"}, "at least 1"},
		{[]string{"bench", "throughput", "--keys", "-1"}, "at least 1"},
		{[]string{"bench", "throughput", "--coalesce", "-1ms"}, "or more"},
		{[]string{"bench", "family", "--family-size", "0"}, "at least 1"},
		{[]string{"bench", "family", "--family-size", "100", "--keyspace", "10"}, "at least --family-size"},
		{[]string{"bench", "outbox", "--dsn", "postgres://x@127.0.0.1:1/db", "--tx", "0"}, "at least 1"},
		{[]string{"bench", "outbox", "--dsn", "postgres://x@127.0.0.1:1/db", "--lag-rate", "0"}, "at least 1"},
		{[]string{"bench", "outbox", "--dsn", "postgres://x@127.0.0.1:1/db", "--lag-duration", "0"}, "above 0"},
		{[]string{"bench", "outbox", "--dsn", "postgres://x@127.0.0.1:1/db", "--relay-rows", "0"}, "at least 1"},
		{[]string{"bench", "outbox", "--tx", "5", "--dsn", ""}, "is required"},

		{[]string{"check-freshness", "--writers", "0"}, "at least 1"},
		{[]string{"check-freshness", "--duration", "0"}, "positive"},
		{[]string{"check-freshness", "--loader-delay", "-1s"}, "negative"},
		{[]string{"check-freshness", "--ttl", "-1m"}, "got -1min"}, // not Go's -1m0s
	} {
		flag := ""
		for _, a := range tc.args {
			if strings.HasPrefix(a, "--") && a != "--yes" {
				flag = a
			}
		}
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			r := invoke(t, env, "", tc.args...)
			if tc.want == "" {
				require.Equal(t, exitUnreachable, r.code, "the value must be accepted: stderr=%s", r.stderr)
				return
			}
			require.Equal(t, exitUsage, r.code, "stdout=%s stderr=%s", r.stdout, r.stderr)
			require.Contains(t, r.stderr, flag)
			require.Contains(t, r.stderr, tc.want)
		})
	}
}
