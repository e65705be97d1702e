//go:build unix && !linux

package pgtest

import "syscall"

// setPdeathsig does nothing without Linux's parent-death signal: a server
// outlives a test binary that crashes before Run stops it.
func setPdeathsig(*syscall.SysProcAttr) {}
