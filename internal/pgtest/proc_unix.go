//go:build unix

package pgtest

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// osUser is the user the server runs as: nil for the current user, else the
// "postgres" user, since initdb and postgres refuse to run as root.
type osUser struct {
	uid, gid uint32
}

// serverOwner returns nil unless the tests run as root.
func serverOwner() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(superuser)
	if err != nil {
		return nil, fmt.Errorf("the tests run as root, which initdb refuses, and there is no %q user to run it as "+
			"(the postgresql package creates one): %w", superuser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", superuser, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", superuser, u.Gid, err)
	}
	return &osUser{uid: uint32(uid), gid: uint32(gid)}, nil
}

// tempParent is where the server's directory goes: the usual temporary
// directory, unless the server's user could not reach into it (a root
// TMPDIR of mode 0700), then /tmp.
func (o *osUser) tempParent() string {
	dir := os.TempDir()
	if o == nil {
		return dir
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o001 != 0 {
		return dir
	}
	return "/tmp"
}

// chown gives dir (and what is in it) to the server's user.
func (o *osUser) chown(dir string) error {
	if o == nil {
		return nil
	}
	return filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(o.uid), int(o.gid))
	})
}

// procAttr runs the process as o, in its own process group (a terminal's
// Ctrl-C reaches the harness, which stops the server, not the server
// directly), with a parent-death signal where the platform has one.
func (o *osUser) procAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	setPdeathsig(a)
	if o != nil {
		a.Credential = &syscall.Credential{Uid: o.uid, Gid: o.gid, NoSetGroups: true}
	}
	return a
}

// signalQuit asks the postmaster for an immediate shutdown.
func signalQuit(p *os.Process) error { return p.Signal(syscall.SIGQUIT) }

// killGroup kills the postmaster and its backends, which share its group.
func killGroup(p *os.Process) error {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		return p.Kill()
	}
	return nil
}
