package pgtest

import "syscall"

// setPdeathsig makes the kernel kill the postmaster when the test binary
// dies, even by SIGKILL, when Run's cleanup never runs. Go sets it after
// switching credentials, so a root binary's postgres-owned child keeps it.
func setPdeathsig(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
