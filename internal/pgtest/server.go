package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	// EnvBinDir names the environment variable that points the harness at
	// the directory holding initdb and postgres, ahead of every other place.
	EnvBinDir = "INVALIDATOR_TEST_PG_BINDIR"

	// superuser is the role initdb creates; trust auth, loopback only.
	superuser = "postgres"
	// startAttempts bounds the retries when a picked port is taken between
	// picking it and postgres binding it.
	startAttempts = 5
	// readyTimeout bounds the wait for a started server to accept queries.
	readyTimeout = 30 * time.Second
	// stopTimeout bounds the wait for an immediate shutdown before SIGKILL.
	stopTimeout = 10 * time.Second
	// logTailBytes is how much of a failed server's log an error shows.
	logTailBytes = 2048
)

// errNotInstalled means no PostgreSQL server binaries were found: the tests
// skip (or fail under CI) rather than error.
var errNotInstalled = errors.New("no PostgreSQL server binaries (initdb, postgres) found")

// serverSettings are the postgres -c settings of the private server: fast
// rather than durable, and able to run logical replication.
var serverSettings = []string{
	"fsync=off",
	"full_page_writes=off",
	"wal_level=logical",
	"max_wal_senders=10",
	"max_replication_slots=10",
	"max_connections=200",
	"shared_buffers=64MB",
	"log_min_messages=warning",
	"log_min_error_statement=panic",
}

// server is the private postgres of one test binary.
type server struct {
	bin     string   // directory of initdb and postgres
	owner   *osUser  // the OS user postgres runs as; nil: this process's
	extra   []string // settings after serverSettings (NewServer's)
	dir     string   // temporary: data/, the socket and the log; removed by stop
	dataDir string
	port    int
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the postmaster is reaped
	admin   *pgxpool.Pool // to the postgres database: CREATE and DROP DATABASE
}

// dsn is the URL of database name on the server.
func (s *server) dsn(name string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + name,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// logPath is where the server's output goes.
func (s *server) logPath() string { return filepath.Join(s.dir, "postgres.log") }

// findBinDir returns the first directory holding both initdb and postgres.
func findBinDir() (string, error) {
	var candidates []string
	if d := os.Getenv(EnvBinDir); d != "" {
		candidates = append(candidates, d)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	// Debian installs the server binaries off PATH, one directory per
	// major version; prefer the newest.
	debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(debian, func(a, b string) int { return versionOf(b) - versionOf(a) })
	candidates = append(candidates, debian...)
	if p, err := exec.LookPath("initdb"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	return pickBinDir(candidates)
}

// pickBinDir returns the first of candidates holding both initdb and postgres.
func pickBinDir(candidates []string) (string, error) {
	for _, d := range candidates {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w (looked in $%s, pg_config --bindir, /usr/lib/postgresql/*/bin and PATH): "+
		"install them with apt-get install postgresql (Debian/Ubuntu) or brew install postgresql (macOS)",
		errNotInstalled, EnvBinDir)
}

// versionOf returns the major version in /usr/lib/postgresql/<v>/bin, or 0.
func versionOf(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// startServer initdbs a fresh cluster and starts postgres on it.
func startServer(ctx context.Context, extra ...string) (_ *server, err error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	owner, err := serverOwner()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(owner.tempParent(), "pgtest-*")
	if err != nil {
		return nil, fmt.Errorf("create the server directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := owner.chown(dir); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-U", superuser, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	initdb.Dir = dir // a root caller's working directory may be unreadable to the postgres user
	initdb.SysProcAttr = owner.procAttr()
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, tail(out))
	}

	var lastErr error
	for range startAttempts {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := launch(bin, dir, data, port, owner, extra)
		if err != nil {
			return nil, err
		}
		if err = s.waitReady(ctx); err == nil {
			return s, nil
		}
		lastErr = err
		_ = s.kill()
		// Only a taken port is worth another try.
		if !strings.Contains(err.Error(), "already in use") && !errors.Is(err, errOtherServer) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("postgres did not start after %d attempts: %w", startAttempts, lastErr)
}

// launch starts postgres without waiting for it to accept connections.
func launch(bin, dir, data string, port int, owner *osUser, extra []string) (*server, error) {
	s := &server{bin: bin, owner: owner, extra: extra, dir: dir, dataDir: data, port: port, exited: make(chan struct{})}
	args := []string{"-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + dir}
	for _, kv := range slices.Concat(serverSettings, extra) {
		args = append(args, "-c", kv)
	}
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), args...)
	s.cmd.Dir = dir
	log, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create the postgres log: %w", err)
	}
	defer log.Close() // the child has its own copy
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = owner.procAttr()

	// The parent-death signal fires when the OS thread that forked the
	// child exits; fork from a fresh goroutine, whose thread the runtime
	// never retires (a test goroutine may be locked to one that exits).
	started := make(chan error, 1)
	go func() { started <- s.cmd.Start() }()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// errOtherServer means the port answered, but not from the started server.
var errOtherServer = errors.New("port answered by another server")

// waitReady polls until the started server accepts queries, then opens the
// admin pool.
func (s *server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if lastErr = s.answers(ctx); lastErr == nil || errors.Is(lastErr, errOtherServer) {
			break
		}
		select {
		case <-s.exited:
			return fmt.Errorf("postgres on port %d exited during startup; its log:\n%s", s.port, s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("postgres on port %d did not answer within %s (last error: %v); its log:\n%s",
				s.port, readyTimeout, lastErr, s.logTail())
		case <-tick.C:
		}
	}
	if lastErr != nil {
		return lastErr
	}
	cfg, err := pgxpool.ParseConfig(s.dsn("postgres"))
	if err != nil {
		return err
	}
	cfg.MaxConns = 4
	s.admin, err = pgxpool.NewWithConfig(ctx, cfg)
	return err
}

// answers checks once that the server accepts queries and is ours: another
// server that grabbed the port first has another data directory.
func (s *server) answers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.dsn("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var dir string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dir); err != nil {
		return err
	}
	if !sameDir(dir, s.dataDir) {
		return fmt.Errorf("%w: started postgres on port %d with %s, but the one answering serves %s",
			errOtherServer, s.port, s.dataDir, dir)
	}
	return nil
}

func sameDir(a, b string) bool {
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	return errA == nil && errB == nil && ra == rb
}

// stop shuts the server down and removes its directory. The data is
// throwaway, so it asks for an immediate shutdown (SIGQUIT: the postmaster
// kills its backends and exits), and kills the process group if that takes
// too long.
func (s *server) stop() error {
	if s.admin != nil {
		s.admin.Close()
	}
	err := s.kill()
	if rmErr := os.RemoveAll(s.dir); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("remove the server directory %s: %w", s.dir, rmErr))
	}
	return err
}

// kill stops the postmaster and waits until it is reaped.
func (s *server) kill() error {
	select {
	case <-s.exited:
		return nil
	default:
	}
	_ = signalQuit(s.cmd.Process)
	select {
	case <-s.exited:
		return nil
	case <-time.After(stopTimeout):
	}
	if err := killGroup(s.cmd.Process); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill postgres pid %d on port %d: %w", s.cmd.Process.Pid, s.port, err)
	}
	<-s.exited
	return nil
}

// logTail returns the end of the server's log, for error messages.
func (s *server) logTail() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	return tail(b)
}

func tail(b []byte) string {
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	return strings.TrimSpace(string(b))
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
