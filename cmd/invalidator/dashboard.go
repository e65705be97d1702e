package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/dashboard"
)

// Environment variables of the dashboard command. There is deliberately no
// --password flag: a flag shows in ps and in shell history.
const (
	envDashboardUser         = "INVALIDATOR_DASHBOARD_USER"
	envDashboardPassword     = "INVALIDATOR_DASHBOARD_PASSWORD"
	envDashboardPasswordFile = "INVALIDATOR_DASHBOARD_PASSWORD_FILE"
)

// maxPasswordFile bounds what --password-file reads: a password, not a disk.
const maxPasswordFile = 4 << 10

type dashboardOpts struct {
	addr         string
	user         string
	passwordFile string
	allowWrites  bool
	showPayloads bool
}

func newDashboardCmd(a *app) *cobra.Command {
	var o dashboardOpts
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the asynqmon web dashboard for the queues, behind auth",
		Long: `Serve the asynqmon web UI for the queue Redis at /monitoring/ ("/" redirects
there) until interrupted, with safe defaults:

  - Basic auth from ` + envDashboardUser + ` and ` + envDashboardPassword + `
    (or --password-file / ` + envDashboardPasswordFile + `). Auth is required
    when --addr is not loopback (127.0.0.1, ::1, localhost): without it the
    command refuses to start. On loopback it is optional.
  - Read-only: retry, delete, archive and pause are refused unless
    --allow-writes; writes must then come from the dashboard's own page
    (same-origin check against CSRF).
  - Payloads redacted: a task shows its kind, key count and first key, or its
    family and parameter names, never other keys or parameter values.
    --show-payloads reveals whole decoded tasks.

Serve it over TLS (a reverse proxy) when it leaves the machine: basic auth
sends the password with every request.

Exit codes: 0 stopped cleanly, 1 failed, 2 refused to start (flags, auth),
3 queue Redis unreachable.`,
		Example: `  # on this machine only, no password:
  invalidator dashboard

  # reachable from elsewhere: credentials are required
  export ` + envDashboardUser + `=ops
  invalidator dashboard --addr 0.0.0.0:8080 --password-file /run/secrets/dashboard`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runDashboard(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", dashboard.DefaultAddr, "listen address; anything but loopback requires credentials")
	f.StringVar(&o.user, "user", "", "basic auth user name (env "+envDashboardUser+")")
	f.StringVar(&o.passwordFile, "password-file", "",
		"file holding the basic auth password, one trailing newline ignored (env "+envDashboardPasswordFile+"; or set "+envDashboardPassword+")")
	f.BoolVar(&o.allowWrites, "allow-writes", false, "let the UI retry, run, archive and delete tasks and pause queues")
	f.BoolVar(&o.showPayloads, "show-payloads", false, "show whole task payloads (keys, parameter values) instead of a redacted summary")
	return cmd
}

func (a *app) runDashboard(cmd *cobra.Command, o dashboardOpts) error {
	ctx := cmd.Context()
	password, err := a.dashboardPassword(o.passwordFile)
	if err != nil {
		return err
	}
	cfg := dashboard.Config{
		Addr:         o.addr,
		Username:     a.env(o.user, envDashboardUser, ""),
		Password:     password,
		AllowWrites:  o.allowWrites,
		ShowPayloads: o.showPayloads,
		Logger:       a.log,
	}
	// Checked before connecting, so a refusal is immediate and about access.
	if err := cfg.ValidateAccess(); err != nil {
		return dashboardAccessError(err)
	}

	rdb, err := a.queueRedis(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	cfg.Redis = rdb
	h, err := dashboard.New(cfg)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("dashboard: listen on %s: %w (is another process using the port? pick another --addr)", o.addr, err)
	}
	mode := []string{"read-only", "payloads redacted"}
	if o.allowWrites {
		mode[0] = "writes allowed (same-origin only)"
	}
	if o.showPayloads {
		mode[1] = "payloads shown"
	}
	if cfg.Username != "" {
		mode = append(mode, "basic auth")
	} else {
		mode = append(mode, "no auth, loopback only")
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		mode = append(mode, "listening on all interfaces")
	}
	fmt.Fprintf(cmd.OutOrStdout(), "dashboard: %s (%s)\n", dashboard.URL(ln.Addr()), strings.Join(mode, ", "))
	return dashboard.Serve(ctx, ln, h, a.log)
}

// dashboardAccessError turns a refused address or credential setting into a
// usage error that says what to set.
func dashboardAccessError(err error) error {
	var hint string
	switch {
	case errors.Is(err, dashboard.ErrAuthRequired):
		hint = "set " + envDashboardUser + " and " + envDashboardPassword + " (or --password-file), or serve on loopback with --addr " + dashboard.DefaultAddr
	case errors.Is(err, dashboard.ErrBadCredentials):
		hint = "set both " + envDashboardUser + " (or --user) and a password (" + envDashboardPassword + " or --password-file), or neither on loopback"
	default:
		return &usageError{fmt.Errorf("dashboard: %w", err)}
	}
	return &usageError{fmt.Errorf("dashboard: refusing to start: %w; %s", err, hint)}
}

// dashboardPassword returns the password from the --password-file flag, else
// from the file env var or the password env var (not both). Errors name the
// file, never its content.
func (a *app) dashboardPassword(flagFile string) (string, error) {
	file := a.env(flagFile, envDashboardPasswordFile, "")
	// The flag may hold the file env var's value (see applyEnv): both env
	// vars set is the conflict, whatever the flag says.
	fromEnv := flagFile == "" || flagFile == a.getenv(envDashboardPasswordFile)
	if fromEnv && file != "" && a.getenv(envDashboardPassword) != "" {
		return "", usagef("both %s and %s are set: keep one", envDashboardPassword, envDashboardPasswordFile)
	}
	if file == "" {
		return a.getenv(envDashboardPassword), nil
	}
	f, err := os.Open(file)
	if err != nil {
		return "", &usageError{fmt.Errorf("dashboard password file: %w", err)}
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o044 != 0 && a.log != nil {
		a.log.Warn("dashboard password file is readable by other users; chmod 600 it", "file", file)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPasswordFile+1))
	if err != nil {
		return "", &usageError{fmt.Errorf("dashboard password file: %w", err)}
	}
	if len(b) > maxPasswordFile {
		return "", usagef("dashboard password file %s: larger than %d bytes, is it the right file?", file, maxPasswordFile)
	}
	// Editors and `echo` end files with a newline that is not part of the
	// password.
	password := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if password == "" {
		return "", usagef("dashboard password file %s is empty", file)
	}
	return password, nil
}
