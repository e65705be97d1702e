package redistest

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes sure no redis-server outlives the test binary: the kernel
// kills it when its parent dies (even by panic or SIGKILL, when Main's cleanup
// never runs), and its own process group keeps a terminal's Ctrl-C from
// reaching it before the harness has stopped it cleanly.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
