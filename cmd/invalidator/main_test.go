package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(func() int { return redistest.Main(m) }))
}

type result struct {
	code           int
	stdout, stderr string
}

// invoke runs the CLI in-process with env as its whole environment.
func invoke(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, streams{in: strings.NewReader(stdin), out: &out, err: &errb},
		func(k string) string { return env[k] })
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}
