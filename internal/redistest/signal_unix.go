//go:build unix

package redistest

import (
	"os"
	"syscall"
)

var sigStop, sigCont os.Signal = syscall.SIGSTOP, syscall.SIGCONT

func signalProcess(p *os.Process, sig os.Signal) error { return p.Signal(sig) }
