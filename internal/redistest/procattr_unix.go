//go:build unix && !linux

package redistest

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts redis-server in its own process group. Without Linux's
// parent-death signal, a server outlives a test binary that crashes before
// Main stops it.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
