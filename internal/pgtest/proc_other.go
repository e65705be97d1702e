//go:build !unix

package pgtest

import (
	"os"
	"syscall"
)

// osUser is unused where there is no root to step down from.
type osUser struct{}

func serverOwner() (*osUser, error)            { return nil, nil }
func (*osUser) chown(string) error             { return nil }
func (*osUser) tempParent() string             { return os.TempDir() }
func (*osUser) procAttr() *syscall.SysProcAttr { return nil }
func signalQuit(p *os.Process) error           { return p.Kill() }
func killGroup(p *os.Process) error            { return p.Kill() }
