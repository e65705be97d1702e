package main

import (
	"encoding/hex"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/tasks"
)

const cliPolicy = `version: 1
classes:
  standard: {ttl: 10m}
families:
  user_profile:
    template: "user:{id}:profile"
    class: standard
  user_feed:
    template: "feed:{user}"
    class: standard
    strategy: version
`

func writePolicy(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	return path
}

func TestHelpListsCommands(t *testing.T) {
	t.Parallel()
	r := invoke(t, nil, "", "--help")
	require.Equal(t, exitOK, r.code, r.stderr)
	for _, c := range []string{"worker", "enqueue", "queues", "dead", "policy"} {
		require.Contains(t, r.stdout, "  "+c+" ")
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"unknown command":              {"frobnicate"},
		"unknown flag":                 {"queues", "--nope"},
		"missing family":               {"enqueue", "family"},
		"bad param":                    {"enqueue", "family", "user_profile", "id"},
		"lint no file":                 {"policy", "lint"},
		"retry nothing":                {"dead", "retry"},
		"typo in group":                {"dead", "retyr", "x"},
		"typo in enqueue":              {"enqueue", "frob"},
		"bad log level":                {"queues", "--log-level", "loud"},
		"one key per line without hex": {"enqueue", "keys", "--one-key-per-line", "k"},
	} {
		t.Run(name, func(t *testing.T) {
			r := invoke(t, nil, "", args...)
			require.Equal(t, exitUsage, r.code, "stdout=%s stderr=%s", r.stdout, r.stderr)
			require.Contains(t, r.stderr, "--help")
		})
	}
}

// A password must never reach the output, whatever goes wrong.
func TestSecretsStayOutOfErrorsAndHelp(t *testing.T) {
	t.Parallel()
	const secret = "pa55-w0rd-x"
	env := map[string]string{envRedisURL: "redis://user:" + secret + "@127.0.0.1:1/0"}
	r := invoke(t, env, "", "queues")
	require.Equal(t, exitUnreachable, r.code, r.stderr)
	require.NotContains(t, r.stderr+r.stdout, secret)
	require.Contains(t, r.stderr, "xxxxx")

	r = invoke(t, nil, "", "queues", "--redis", "redis://user:"+secret+"@127.0.0.1:bad/0")
	require.Equal(t, exitUsage, r.code, r.stderr)
	require.NotContains(t, r.stderr+r.stdout, secret)

	r = invoke(t, env, "", "worker", "--help")
	require.Equal(t, exitOK, r.code)
	require.NotContains(t, r.stdout, secret)
}

func TestPolicyLint(t *testing.T) {
	t.Parallel()
	good := writePolicy(t, cliPolicy)
	r := invoke(t, nil, "", "policy", "lint", good)
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "ok (1 classes, 2 families, 0 events, 0 warnings)")

	bad := writePolicy(t, `version: 1
classes:
  standard: {ttl: 10m, jitter: 0.9}
families:
  a:
    template: "a:{id"
    class: standard
  b:
    template: "b:{id}"
    class: nope
`)
	r = invoke(t, nil, "", "policy", "lint", bad)
	require.Equal(t, exitFailure, r.code)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.GreaterOrEqual(t, len(lines), 3, "every problem must be reported: %s", r.stdout)
	for _, want := range []string{bad + ":3:", bad + ":6:", bad + ":10:"} {
		require.Contains(t, r.stdout, want)
	}

	// --json: stdout is one JSON object, with the same problems, and the
	// exit code is the same.
	r = invoke(t, nil, "", "policy", "lint", "--json", bad)
	require.Equal(t, exitFailure, r.code, r.stderr)
	rep := oneJSON[lintReport](t, r.stdout)
	require.False(t, rep.OK)
	require.Len(t, rep.Errors, len(lines))
	gotLines := map[int]bool{}
	for _, e := range rep.Errors {
		require.Equal(t, bad, e.File)
		require.NotEmpty(t, e.Message)
		gotLines[e.Line] = true
	}
	require.Subset(t, slices.Collect(maps.Keys(gotLines)), []int{3, 6, 10})

	r = invoke(t, nil, "", "policy", "lint", "--json", good)
	require.Equal(t, exitOK, r.code, r.stderr)
	rep = oneJSON[lintReport](t, r.stdout)
	require.True(t, rep.OK)
	require.Equal(t, 2, rep.Families)
	require.Empty(t, rep.Errors)

	// FILE defaults to the policy of INVALIDATOR_POLICY, as --policy does
	// for every other command.
	r = invoke(t, map[string]string{envPolicy: good}, "", "policy", "lint")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, good+": ok")
	r = invoke(t, map[string]string{envPolicy: good}, "", "policy", "doc")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	r = invoke(t, nil, "", "policy", "lint")
	require.Equal(t, exitUsage, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, envPolicy)
}

func TestEnqueueQueuesAndDeadLetter(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	env := map[string]string{envRedisURL: db.URL, envPolicy: writePolicy(t, cliPolicy)}

	r := invoke(t, env, "", "enqueue", "keys", "a", "b", "c")
	require.Equal(t, exitOK, r.code, r.stderr)
	ids := strings.Fields(r.stdout)
	require.Len(t, ids, 1)

	r = invoke(t, env, "k1\n\nk2\n", "enqueue", "keys", "--stdin", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var out struct {
		TaskIDs []string `json:"task_ids"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
	require.Len(t, out.TaskIDs, 1)

	r = invoke(t, env, "", "enqueue", "keys", "--hex", hex.EncodeToString([]byte("\x00\xffk")))
	require.Equal(t, exitOK, r.code, r.stderr)
	hexID := strings.TrimSpace(r.stdout)
	insp := asynq.NewInspectorFromRedisClient(db.Client)
	ti, err := insp.GetTaskInfo("invalidator-standard", hexID)
	require.NoError(t, err)
	decoded, err := tasks.Unmarshal(ti.Type, ti.Payload)
	require.NoError(t, err)
	require.Equal(t, []string{"\x00\xffk"}, decoded.(tasks.DeleteKeys).Keys)

	r = invoke(t, env, "", "enqueue", "family", "user_profile", "id=*")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = invoke(t, env, "", "enqueue", "bump", "user_feed", "user=1")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = invoke(t, env, "", "enqueue", "family", "nope", "id=1")
	require.Equal(t, exitUsage, r.code)
	require.Contains(t, r.stderr, `"nope"`)

	r = invoke(t, env, "", "queues", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var qs []queueStats
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &qs))
	require.Len(t, qs, 1)
	require.Equal(t, 5, qs[0].Pending)

	// Fabricate a dead letter: archive two tasks as a failed worker would.
	require.NoError(t, insp.ArchiveTask("invalidator-standard", ids[0]))
	require.NoError(t, insp.ArchiveTask("invalidator-standard", hexID))
	r = invoke(t, env, "", "dead", "list", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var dead []deadTask
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &dead))
	require.Len(t, dead, 2)
	summaries := dead[0].Summary + dead[1].Summary
	require.Contains(t, summaries, `"a"`)

	r = invoke(t, env, "", "dead", "list")
	require.Equal(t, exitOK, r.code)
	require.Contains(t, r.stdout, ids[0][:shortIDLen])

	r = invoke(t, env, "", "dead", "retry", ids[0])
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "1 task put back")
	ti, err = insp.GetTaskInfo("invalidator-standard", ids[0])
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, ti.State)

	r = invoke(t, env, "", "dead", "retry", "no-such-id")
	require.Equal(t, exitFailure, r.code)
	require.Contains(t, r.stderr, "no-such-id")

	// Purge refuses without a terminal or --yes.
	r = invoke(t, env, "", "dead", "purge", "--all")
	require.Equal(t, exitUsage, r.code)
	require.Contains(t, r.stderr, "--yes")
	r = invoke(t, env, "", "dead", "purge", "--all", "--yes")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "1 task purged")

	require.NoError(t, insp.ArchiveTask("invalidator-standard", ids[0]))
	r = invoke(t, env, "", "dead", "retry", "--all", "--queue", "invalidator-standard")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "1 task put back")
	r = invoke(t, env, "", "dead", "list", "--queue", "nope")
	require.Equal(t, exitUsage, r.code)
}

func TestBenchJSON(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	r := invoke(t, map[string]string{envRedisURL: db.URL}, "", "bench", "throughput", "--keys", "500", "--keys-per-call", "10", "--producers", "2", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
	require.Equal(t, "throughput", res["scenario"])
	for _, k := range []string{"keys_per_sec", "baselines", "ratios"} {
		require.Contains(t, res, k)
	}
	require.Contains(t, r.stderr, "baseline", "progress goes to stderr")

	r = invoke(t, map[string]string{envRedisURL: db.URL}, "", "bench", "nope")
	require.Equal(t, exitUsage, r.code)
}
