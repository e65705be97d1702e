package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// startAttempts bounds the retries when a picked port is taken between
	// picking it and redis-server binding it.
	startAttempts = 5
	// readyTimeout bounds the wait for a started server to answer PING.
	readyTimeout = 10 * time.Second
	// answerTimeout bounds one readiness probe; a failed probe is retried.
	answerTimeout = 250 * time.Millisecond
	// logTailBytes is how much of a failed server's log an error shows.
	logTailBytes = 2048
)

// server is one redis-server process started by the harness.
type server struct {
	port int
	dir  string // the server's --dir and log; removed by stop unless kept
	// keepDir: dir belongs to the caller and outlives this process (data
	// that must survive a restart).
	keepDir bool
	cmd     *exec.Cmd
	// password is the server's requirepass, "" for none; answers needs it.
	password string
	// exited is closed once the process has exited and been reaped.
	exited chan struct{}
}

// addr is the server's host:port.
func (s *server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// pid is the server's process id.
func (s *server) pid() int { return s.cmd.Process.Pid }

// logPath is where the server's stdout and stderr go.
func (s *server) logPath() string { return filepath.Join(s.dir, "redis.log") }

// stop kills the process (SIGKILL), waits until it is reaped (so its ports are
// free when stop returns) and removes its directory, unless the caller keeps
// it. Killing is enough: the server keeps nothing on disk that matters, or,
// with the caller's directory, only what an append-only file fsynced. stop is
// safe to call more than once.
func (s *server) stop() error {
	if !s.hasExited() {
		if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("kill redis-server pid %d on port %d: %w", s.pid(), s.port, err)
		}
		<-s.exited
	}
	if s.keepDir {
		return nil
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove redis-server directory %s: %w", s.dir, err)
	}
	return nil
}

// hasExited reports whether the process has exited.
func (s *server) hasExited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// lookRedisServer finds the redis-server binary named name on PATH.
func lookRedisServer(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found on PATH (install it: apt-get install redis-server; "+
			"or set %s to a Redis server the tests may flush): %w", name, EnvURL, err)
	}
	return path, nil
}

// serverSpec says how to start one server: which binary, how to pick a port,
// and the extra arguments for that port.
type serverSpec struct {
	bin       string
	pickPort  func() (int, error)
	extraArgs func(port int) []string
	dir       string // if set, the server's --dir, kept when it stops; else a fresh one
	password  string // if set, the server's requirepass
}

// startServer starts a redis-server and waits until it answers. A port picked
// free can be taken by someone else before redis-server binds it, so that
// case is retried on another port.
func startServer(ctx context.Context, spec serverSpec) (*server, error) {
	var lastErr error
	for range startAttempts {
		port, err := spec.pickPort()
		if err != nil {
			return nil, err
		}
		s, err := launch(spec, port)
		if err != nil {
			return nil, err
		}
		err = s.waitReady(ctx)
		if err == nil {
			return s, nil
		}
		lastErr = err
		_ = s.stop()
		// Only a taken port is worth another try: a bad argument or a server
		// that runs but does not answer would fail the same way again.
		if !errors.Is(err, errOtherProcess) && !strings.Contains(err.Error(), "already in use") {
			return nil, err
		}
	}
	return nil, fmt.Errorf("redis-server did not start after %d attempts: %w", startAttempts, lastErr)
}

// launch starts the process without waiting for it to be ready.
func launch(spec serverSpec, port int) (*server, error) {
	dir, keep := spec.dir, spec.dir != ""
	if !keep {
		var err error
		if dir, err = os.MkdirTemp("", "redistest-*"); err != nil {
			return nil, fmt.Errorf("create redis-server directory: %w", err)
		}
	}
	// Only a directory of our own is removed when the start fails.
	removeDir := func() {
		if !keep {
			_ = os.RemoveAll(dir)
		}
	}
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
	}
	if spec.password != "" {
		args = append(args, "--requirepass", spec.password)
	}
	args = append(args, spec.extraArgs(port)...)
	s := &server{port: port, dir: dir, keepDir: keep, cmd: exec.Command(spec.bin, args...), password: spec.password, exited: make(chan struct{})}
	log, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		removeDir()
		return nil, fmt.Errorf("create redis-server log: %w", err)
	}
	// The child has its own copy of the descriptor; ours is not needed after Start.
	defer log.Close()
	s.cmd.Stdout, s.cmd.Stderr = log, log
	setProcAttr(s.cmd)

	// On Linux the parent-death signal fires when the OS *thread* that forked
	// the child exits. A test goroutine may be locked to a thread that exits
	// with it, so fork from a fresh, unlocked goroutine: the Go runtime never
	// retires the threads those run on.
	started := make(chan error, 1)
	go func() { started <- s.cmd.Start() }()
	if err := <-started; err != nil {
		removeDir()
		return nil, fmt.Errorf("start %s: %w", spec.bin, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// waitReady polls until this very process answers. It dials plain TCP until
// the port accepts (a go-redis client would retry each dial and log every
// refusal), then checks INFO's process_id, which guards against a different
// server that grabbed the port first.
func (s *server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if s.hasExited() {
			return fmt.Errorf("redis-server on port %d exited during startup; its log:\n%s", s.port, s.logTail())
		}
		lastErr = s.answers(ctx)
		if lastErr == nil {
			return nil
		}
		if errors.Is(lastErr, errOtherProcess) {
			return lastErr
		}
		select {
		case <-s.exited:
			return fmt.Errorf("redis-server on port %d exited during startup; its log:\n%s", s.port, s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("redis-server on port %d did not answer within %s (last error: %v); its log:\n%s",
				s.port, readyTimeout, lastErr, s.logTail())
		case <-tick.C:
		}
	}
}

// errOtherProcess means the port answered, but not from the started process.
var errOtherProcess = errors.New("port answered by another process")

// answers checks once that the server accepts connections and is s.
func (s *server) answers(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.addr())
	if err != nil {
		return err
	}
	_ = conn.Close()
	// Short timeouts: whatever accepted the connection may never answer.
	c := redis.NewClient(&redis.Options{
		Addr: s.addr(), Password: s.password, MaxRetries: -1, DialTimeout: answerTimeout, ReadTimeout: answerTimeout, WriteTimeout: answerTimeout,
	})
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return err
	}
	if pid := infoField(info, "process_id"); pid != strconv.Itoa(s.pid()) {
		return fmt.Errorf("%w: redis-server pid %d started on port %d, but pid %s answers", errOtherProcess, s.pid(), s.port, pid)
	}
	return nil
}

// logTail returns the end of the server's log, for error messages.
func (s *server) logTail() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	return strings.TrimSpace(string(b))
}

// infoField returns the value of field in an INFO or CLUSTER INFO reply.
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
