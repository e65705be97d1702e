package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// builtBinary builds the invalidator binary, with the race detector, once
// per test binary: process tests share it instead of paying a build each.
var builtBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "invalidator-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "invalidator")
	out, err := exec.Command("go", "build", "-race", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &buildError{out: out, err: err}
	}
	return bin, nil
})

// plainStamp is the version plainBinary is stamped with: unique per test
// binary, so a stale binary cannot pass TestVersionStampedAtLinkTime.
var plainStamp = fmt.Sprintf("v0.0.0-test.%d", time.Now().UnixNano())

// plainBinary builds the invalidator binary without the race detector, once
// per test binary, stamped at link time as `make build` stamps it. The
// version fault needs a worker at production speed: the old millisecond
// versions ran ahead of the clock only above about one bump of an entity a
// millisecond, which a race-built worker on a busy machine does not reach,
// so against that code the fault rarely showed with it. The version test
// shares the build rather than pay for a second one.
var plainBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "invalidator-plain-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "invalidator")
	out, err := exec.Command("go", "build", "-ldflags", "-X main.buildVersion="+plainStamp+" -X main.buildCommit=0123456789abcdef",
		"-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &buildError{out: out, err: err}
	}
	return bin, nil
})

type buildError struct {
	out []byte
	err error
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + ": " + string(e.out) }

// testBinary returns the path of the built binary; it skips in -short mode,
// where process tests do not run.
func testBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin, err := builtBinary()
	require.NoError(t, err)
	return bin
}

// proc is a running invalidator process whose stderr (the logs) the test
// reads while it runs. Cleanup kills it if the test has not waited for it.
type proc struct {
	cmd    *exec.Cmd
	logs   *syncBuffer
	exited chan error // receives Wait's result once
}

// startProc starts bin with args and env as its whole environment.
func startProc(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), logs: &syncBuffer{}, exited: make(chan error, 1)}
	p.cmd.Env = env
	p.cmd.Stderr = p.logs
	p.cmd.Stdout = p.logs
	require.NoError(t, p.cmd.Start())
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
		}
	})
	return p
}

// signal sends sig to the process.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
}

// wait waits up to d for the process to exit and returns Wait's error.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.exited:
		p.exited <- err // later waits (and Cleanup) see it too
		return err
	case <-time.After(d):
		t.Fatalf("%v did not exit within %s; logs:\n%s", p.cmd.Args, d, p.logs)
		return nil
	}
}
