//go:build !linux

package redistest_test

import (
	"os"
	"syscall"
)

// serverRunning reports whether pid is alive. Without /proc it cannot rule
// out a recycled pid or a zombie, so it may err towards "running".
func serverRunning(pid, _ int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return p.Signal(syscall.Signal(0)) == nil
}
