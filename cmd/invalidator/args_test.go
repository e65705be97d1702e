package main

import (
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/tasks"
)

// queuedKeys returns the keys of every pending DeleteKeys task, in task
// order, of every queue.
func queuedKeys(t *testing.T, db *redistest.DB) [][]string {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(db.Client)
	queues, err := insp.Queues()
	require.NoError(t, err)
	var out [][]string
	for _, q := range queues {
		infos, err := insp.ListPendingTasks(q)
		require.NoError(t, err)
		for _, ti := range infos {
			task, err := tasks.Unmarshal(ti.Type, ti.Payload)
			require.NoError(t, err)
			out = append(out, task.(tasks.DeleteKeys).Keys)
		}
	}
	return out
}

// A line ending is not part of a key: CRLF files (Windows, docker exec -t)
// must delete the keys they name, not "k\r".
func TestEnqueueKeysStdinLineEndings(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		stdin string
		hex   bool
		want  []string
	}{
		"CRLF":                        {stdin: "k\r\n", want: []string{"k"}},
		"CRLF lines":                  {stdin: "user:1\r\nuser:2\r\n", want: []string{"user:1", "user:2"}},
		"mixed LF and CRLF":           {stdin: "a\nb\r\nc\n", want: []string{"a", "b", "c"}},
		"blank CRLF lines skipped":    {stdin: "\r\na\r\n\r\n\nb\r\n", want: []string{"a", "b"}},
		"last line without newline":   {stdin: "a\r\nb", want: []string{"a", "b"}},
		"UTF-8 BOM at the start":      {stdin: "\ufeffa\r\nb\r\n", want: []string{"a", "b"}},
		"inner spaces kept":           {stdin: "search:red shoes\n", want: []string{"search:red shoes"}},
		"UTF-8 kept":                  {stdin: "prix:crème brûlée\n", want: []string{"prix:crème brûlée"}},
		"hex CRLF":                    {stdin: "6b\r\n6b6579\r\n", hex: true, want: []string{"k", "key"}},
		"hex upper case":              {stdin: "00FF6B\n", hex: true, want: []string{"\x00\xffk"}},
		"hex surrounding spaces":      {stdin: "  6b65 \t\r\n", hex: true, want: []string{"ke"}},
		"hex of CR is a real CR":      {stdin: "6b0d\r\n", hex: true, want: []string{"k\r"}},
		"hex BOM and no last newline": {stdin: "\ufeff6b\n6c", hex: true, want: []string{"k", "l"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := redistest.NewDB(t)
			args := []string{"enqueue", "keys", "--stdin"}
			if tc.hex {
				args = append(args, "--hex")
			}
			r := invoke(t, map[string]string{envRedisURL: db.URL}, tc.stdin, args...)
			require.Equal(t, exitOK, r.code, r.stderr)
			require.Equal(t, [][]string{tc.want}, queuedKeys(t, db))
		})
	}
}

// Text that cannot be the key the user meant is refused with the argument or
// line named and nothing enqueued: a usage error loses nothing, deleting a
// different key loses the invalidation.
func TestEnqueueKeysRefusesMangledText(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		stdin string
		args  []string
		want  []string // in stderr
	}{
		"CR in an argument ($(cat crlf-file))":           {args: []string{"a", "k\r"}, want: []string{"argument 2", "carriage return", "--hex"}},
		"CR inside a line":                               {stdin: "a\nk\rx\n", want: []string{"line 2 of standard input", "carriage return"}},
		"lone CR at the end of input":                    {stdin: "a\r\nk\r", want: []string{"line 2 of standard input", "carriage return"}},
		"old Mac line endings":                           {stdin: "a\rb\r", want: []string{"line 1", "carriage return"}},
		"NUL byte":                                       {stdin: "a\x00b\n", want: []string{"line 1", "NUL", "--hex"}},
		"tab (a TSV column)":                             {stdin: "user:1\t42\n", want: []string{"line 1", "tab"}},
		"escape character":                               {args: []string{"k\x1b[0m"}, want: []string{"argument 1", "U+001B"}},
		"C1 control":                                     {args: []string{"k\u0085"}, want: []string{"argument 1", "U+0085"}},
		"Latin-1 byte":                                   {stdin: "caf\xe9\n", want: []string{"line 1", "not valid UTF-8", "byte 4"}},
		"UTF-16 input (PowerShell >)":                    {stdin: "\xff\xfek\x00\r\x00\n\x00", want: []string{"UTF-16", "iconv"}},
		"BOM inside an argument":                         {args: []string{"\ufeffk"}, want: []string{"argument 1", "byte-order mark"}},
		"BOM on a later line":                            {stdin: "a\n\ufeffb\n", want: []string{"line 2", "byte-order mark"}},
		"trailing space":                                 {stdin: "a\nk \n", want: []string{"line 2", "ends with a space"}},
		"leading space":                                  {args: []string{" k"}, want: []string{"argument 1", "starts with a space"}},
		"line of spaces":                                 {stdin: "a\n   \n", want: []string{"line 2", "only spaces"}},
		"no-break space at the end":                      {args: []string{"k\u00a0"}, want: []string{"argument 1", "ends with a space"}},
		"empty argument":                                 {args: []string{"a", ""}, want: []string{"argument 2", "empty"}},
		"newline in an argument":                         {args: []string{"a\nb"}, want: []string{"argument 1", "line feed"}},
		"key longer than any key":                        {args: []string{strings.Repeat("k", tasks.MaxKeyBytes+1)}, want: []string{"argument 1", "never truncated"}},
		"line longer than any key":                       {stdin: strings.Repeat("k", maxInputLine+10), want: []string{"line 1", "longer than"}},
		"hex with CR in an argument is fine, odd is not": {args: []string{"--hex", "6b\r", "6b6"}, want: []string{"argument 2", "odd number of digits"}},
		"hex with a space inside":                        {args: []string{"--hex", "6b 65"}, want: []string{"argument 1", "not a hex digit", "one run"}},
		"hex 0x prefix":                                  {args: []string{"--hex", "0x6b"}, want: []string{"argument 1", `'x'`}},
		"hex empty line of spaces":                       {args: []string{"--hex", "--stdin"}, stdin: "6b\n  \n", want: []string{"line 2", "no hex digits"}},
		"hex xxd groups":                                 {args: []string{"--hex", "--stdin"}, stdin: "6b65 7900\n", want: []string{"line 1", "not a hex digit"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := redistest.NewDB(t)
			args := append([]string{"enqueue", "keys"}, tc.args...)
			if tc.stdin != "" && !strings.Contains(strings.Join(tc.args, " "), "--stdin") {
				args = append(args, "--stdin")
			}
			r := invoke(t, map[string]string{envRedisURL: db.URL}, tc.stdin, args...)
			require.Equal(t, exitUsage, r.code, "stdout=%s stderr=%s", r.stdout, r.stderr)
			for _, w := range tc.want {
				require.Contains(t, r.stderr, w)
			}
			require.Empty(t, r.stdout, "no task ID: nothing may be enqueued")
			require.Empty(t, queuedKeys(t, db), "a refused input enqueued something")
		})
	}
}

const paramsPolicy = `version: 1
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
events:
  user.updated:
    attributes: [id]
    invalidates:
      - family: user_profile
`

// NAME=VALUE arguments of every command that takes them: a value that would
// render a key nobody caches is refused, not enqueued.
func TestParamsRefuseMangledValues(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	env := map[string]string{envRedisURL: db.URL, envPolicy: writePolicy(t, paramsPolicy)}
	commands := map[string][]string{
		"family":  {"enqueue", "family", "user_profile", "--yes"},
		"bump":    {"enqueue", "bump", "user_feed"},
		"event":   {"enqueue", "event", "user.updated"},
		"explain": {"policy", "explain", "user.updated"},
	}
	param := map[string]string{"family": "id", "bump": "user", "event": "id", "explain": "id"}
	for name, tc := range map[string]struct {
		args func(p string) []string
		want []string
	}{
		"trailing CR ($(cat file))": {func(p string) []string { return []string{p + "=7\r"} }, []string{"carriage return"}},
		"space after '='":           {func(p string) []string { return []string{p + "=", "7"} }, []string{"empty value", "no space after '='"}},
		"quoted space after '='":    {func(p string) []string { return []string{p + "= 7"} }, []string{"starts with a space"}},
		"trailing space":            {func(p string) []string { return []string{p + "=7 "} }, []string{"ends with a space"}},
		"space before '='":          {func(p string) []string { return []string{p + " =7"} }, []string{"not a parameter name"}},
		"missing '='":               {func(p string) []string { return []string{p} }, []string{"not NAME=VALUE"}},
		"duplicate":                 {func(p string) []string { return []string{p + "=1", p + "=2"} }, []string{"given twice"}},
		"double '='":                {func(p string) []string { return []string{p + "==7"} }, []string{"starts with '='"}},
		"tab":                       {func(p string) []string { return []string{p + "=7\t8"} }, []string{"tab"}},
		"Latin-1":                   {func(p string) []string { return []string{p + "=caf\xe9"} }, []string{"UTF-8"}},
		"BOM":                       {func(p string) []string { return []string{p + "=\ufeff7"} }, []string{"byte-order mark"}},
		"empty name":                {func(p string) []string { return []string{"=7"} }, []string{"not a parameter name"}},
	} {
		for cmdName, base := range commands {
			t.Run(name+"/"+cmdName, func(t *testing.T) {
				t.Parallel()
				r := invoke(t, env, "", append(append([]string{}, base...), tc.args(param[cmdName])...)...)
				require.Equal(t, exitUsage, r.code, "stdout=%s stderr=%s", r.stdout, r.stderr)
				for _, w := range tc.want {
					require.Contains(t, r.stderr, w)
				}
				require.Empty(t, r.stdout)
			})
		}
	}
	// Nothing above reached the queue.
	queues, err := asynq.NewInspectorFromRedisClient(db.Client).Queues()
	require.NoError(t, err)
	require.Empty(t, queues)

	// What is accepted arrives byte for byte.
	r := invoke(t, env, "", "enqueue", "family", "user_profile", "--yes", "id=a=b c")
	require.Equal(t, exitOK, r.code, r.stderr)
	ti, err := asynq.NewInspectorFromRedisClient(db.Client).GetTaskInfo("invalidator-standard", strings.TrimSpace(r.stdout))
	require.NoError(t, err)
	task, err := tasks.Unmarshal(ti.Type, ti.Payload)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"id": "a=b c"}, task.(tasks.DeleteFamily).Params)
}

// xxd -p wraps its output every 30 bytes (60 hex digits) and basenc --base16
// every 38 (76 digits), so a longer key piped through either arrives as
// several lines, which --hex would read as several keys: the real key stays
// cached. A line of exactly that width with more input after it is refused,
// since it cannot be told from a wrap; --one-key-per-line says it is not one.
func TestEnqueueKeysHexRefusesWrappedDump(t *testing.T) {
	t.Parallel()
	key40 := strings.Repeat("k", 40)
	hex40 := hex.EncodeToString([]byte(key40)) // 80 digits: 60 + 20 as xxd -p prints it
	for name, tc := range map[string]struct {
		stdin string
		args  []string
		want  []string // in stderr
	}{
		"xxd -p of a 40-byte key":             {stdin: hex40[:60] + "\n" + hex40[60:] + "\n", want: []string{"line 1 of standard input", "xxd -p", "xxd -p -c 0", "tr -d", "--one-key-per-line"}},
		"xxd -p, CRLF, no last newline":       {stdin: hex40[:60] + "\r\n" + hex40[60:], want: []string{"line 1", "xxd -p"}},
		"wrapped key after a short one":       {stdin: "6b6579\n" + hex40[:60] + "\n" + hex40[60:] + "\n6c\n", want: []string{"line 2", "xxd -p"}},
		"xxd -p of a 60-byte key":             {stdin: strings.Repeat("6b", 30) + "\n" + strings.Repeat("6b", 30) + "\n", want: []string{"line 1", "xxd -p"}},
		"basenc --base16 of a 40-byte key":    {stdin: strings.ToUpper(hex40[:76]) + "\n" + strings.ToUpper(hex40[76:]) + "\n", want: []string{"line 1", "basenc --base16", "-w0"}},
		"$(xxd -p) split into arguments":      {args: []string{hex40[:60], hex40[60:]}, want: []string{"argument 1", "xxd -p"}},
		"wrapped with surrounding whitespace": {stdin: "  " + hex40[:60] + "\t\n" + hex40[60:] + "\n", want: []string{"line 1", "xxd -p"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := redistest.NewDB(t)
			args := append([]string{"enqueue", "keys", "--hex"}, tc.args...)
			if tc.stdin != "" {
				args = append(args, "--stdin")
			}
			r := invoke(t, map[string]string{envRedisURL: db.URL}, tc.stdin, args...)
			require.Equal(t, exitUsage, r.code, "stdout=%s stderr=%s", r.stdout, r.stderr)
			for _, w := range tc.want {
				require.Contains(t, r.stderr, w)
			}
			require.Empty(t, r.stdout, "no task ID: nothing may be enqueued")
			require.Empty(t, queuedKeys(t, db), "a refused input enqueued something")
		})
	}
	for name, tc := range map[string]struct {
		stdin string
		args  []string
		want  []string
	}{
		"a 60-digit line last":      {stdin: "6b\n" + hex40[:60] + "\n", want: []string{"k", key40[:30]}},
		"lines of other widths":     {stdin: hex40[:62] + "\n" + hex40[62:] + "\n", want: []string{key40[:31], key40[31:]}},
		"one unwrapped 40-byte key": {stdin: hex40 + "\n", want: []string{key40}},
		"--one-key-per-line":        {stdin: hex40[:60] + "\n" + hex40[60:] + "\n", args: []string{"--one-key-per-line"}, want: []string{key40[:30], key40[30:]}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := redistest.NewDB(t)
			args := append([]string{"enqueue", "keys", "--hex", "--stdin"}, tc.args...)
			r := invoke(t, map[string]string{envRedisURL: db.URL}, tc.stdin, args...)
			require.Equal(t, exitOK, r.code, r.stderr)
			require.Equal(t, [][]string{tc.want}, queuedKeys(t, db))
		})
	}
}

// The same through the real xxd, where it is installed: its default output
// is refused, and the one-line forms the error suggests deliver the key.
func TestEnqueueKeysHexThroughXxd(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("xxd"); err != nil {
		t.Skip("xxd not installed")
	}
	key := "product:{42}:price:EUR:" + strings.Repeat("x", 17) // 40 bytes
	require.Len(t, key, 40)
	xxd := func(args ...string) string {
		cmd := exec.Command("xxd", args...)
		cmd.Stdin = strings.NewReader(key)
		out, err := cmd.Output()
		require.NoError(t, err)
		return string(out)
	}
	wrapped := xxd("-p")
	require.Equal(t, 2, strings.Count(wrapped, "\n"), "xxd -p wraps a 40-byte key over two lines: %q", wrapped)

	db := redistest.NewDB(t)
	env := map[string]string{envRedisURL: db.URL}
	r := invoke(t, env, wrapped, "enqueue", "keys", "--stdin", "--hex")
	require.Equal(t, exitUsage, r.code, "stdout=%s stderr=%s", r.stdout, r.stderr)
	require.Contains(t, r.stderr, "xxd -p -c 0")
	require.Empty(t, queuedKeys(t, db))

	r = invoke(t, env, strings.ReplaceAll(wrapped, "\n", ""), "enqueue", "keys", "--stdin", "--hex") // xxd -p | tr -d '\n'
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, [][]string{{key}}, queuedKeys(t, db))
}
