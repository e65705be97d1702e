package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redisconn"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// Exit codes. Scripts can tell a typo from an outage.
const (
	exitOK          = 0
	exitFailure     = 1 // the operation failed, or lint found problems
	exitUsage       = 2 // bad flags, arguments, URL or policy file
	exitUnreachable = 3 // a Redis or PostgreSQL server did not answer
)

// Environment variables read when the matching flag is not set.
const (
	envRedisURL      = "INVALIDATOR_REDIS_URL"
	envCacheRedisURL = "INVALIDATOR_CACHE_REDIS_URL"
	envPolicy        = "INVALIDATOR_POLICY"
	envLogLevel      = "INVALIDATOR_LOG_LEVEL"
	defaultRedisURL  = "redis://127.0.0.1:6379/0"
)

type streams struct {
	in       io.Reader
	out, err io.Writer
}

// lockedWriter serializes the writes of several goroutines to one stream.
type lockedWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

// fileOf is the *os.File behind w, if any: a terminal check must see
// through lockedWriter.
func fileOf(w io.Writer) (*os.File, bool) {
	if l, ok := w.(*lockedWriter); ok {
		w = l.w
	}
	f, ok := w.(*os.File)
	return f, ok
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// usageError is a mistake in how the command was called.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return &usageError{fmt.Errorf(format, args...)} }

// unreachableError is a Redis or PostgreSQL server that did not answer.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// app holds what every command shares: streams, environment and the
// global flags. It lives for one run; nothing is package-level.
type app struct {
	streams
	getenv   func(string) string
	redisURL string
	policy   string
	logLevel string
	logJSON  bool
	log      *slog.Logger // set before any command runs
}

func run(ctx context.Context, args []string, s streams, getenv func(string) string) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The logger and a command's progress lines (dev's status, on stderr
	// with --json) write from different goroutines: one line at a time.
	s.out, s.err = &lockedWriter{w: s.out}, &lockedWriter{w: s.err}
	a := &app{streams: s, getenv: getenv}
	root := newRootCmd(a)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(s.err, "invalidator: %v\n", err)
	var ue *usageError
	var re *unreachableError
	switch {
	case errors.As(err, &ue), isInputError(err):
		fmt.Fprintf(s.err, "Try '%s --help'.\n", cmd.CommandPath())
		return exitUsage
	case errors.As(err, &re):
		return exitUnreachable
	}
	return exitFailure
}

// isInputError reports errors caused by what the user typed (an unknown
// family, a bad parameter, an unknown command) rather than by the system.
func isInputError(err error) bool {
	for _, target := range []error{
		keyspec.ErrUnknownFamily, keyspec.ErrUnknownClass, keyspec.ErrMissingParam, keyspec.ErrUnknownParam,
		keyspec.ErrEmptyParam, keyspec.ErrUnsafePattern, keyspec.ErrNotVersioned, keyspec.ErrVersioned,
		keyspec.ErrUnsafeHashTag, keyspec.ErrInvalidTemplate, keyspec.ErrUnknownEvent, tasks.ErrInvalid, enqueue.ErrUnknownQueue,
		keyspec.ErrInvalidParam,
		redisconn.ErrClusterNode,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return strings.HasPrefix(err.Error(), "unknown command ")
}

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "invalidator",
		Short: "Background cache invalidation for services that cache in Redis",
		Long: `invalidator applies typed cache-invalidation tasks from Redis-backed asynq
queues: key deletes, family (pattern) deletes and version bumps, with retries
and a dead letter.

Redis URLs: redis://[user:password@]host:port[/db], rediss:// for TLS,
redis+cluster://host:port[,host:port...] for Redis Cluster (a redis:// URL
to a cluster node is refused),
redis+sentinel://host:port[,...]/master-name for Sentinel.

Exit codes: 0 ok, 1 failed, 2 usage error (including a Redis URL whose
password or database the server refuses), 3 Redis or PostgreSQL unreachable.`,
		Version:       version(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(a.in)
	root.SetOut(a.out)
	root.SetErr(a.err)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		def := "info"
		if cmd.Name() == "dev" {
			def = "warn" // its status lines are the display; logs would bury them
		}
		// Flags from their env vars first: --log-level's among them.
		envErr := a.applyEnv(cmd)
		log, err := a.newLogger(def)
		a.log = log
		if envErr != nil {
			return envErr
		}
		return err
	}
	f := root.PersistentFlags()
	f.StringVar(&a.redisURL, "redis", "", "queue Redis URL (env "+envRedisURL+"; default "+defaultRedisURL+")")
	f.StringVar(&a.policy, "policy", "", "policy file with classes and families (env "+envPolicy+")")
	f.StringVar(&a.logLevel, "log-level", "", "debug, info, warn or error (env "+envLogLevel+"; default info)")
	f.BoolVar(&a.logJSON, "log-json", false, "log as JSON lines instead of text")

	root.AddCommand(
		newWorkerCmd(a),
		newEnqueueCmd(a),
		newQueuesCmd(a),
		newDeadCmd(a),
		newPolicyCmd(a),
		newBenchCmd(a),
		newDashboardCmd(a),
		newExporterCmd(a),
		newCheckFreshnessCmd(a),
		newDevCmd(a),
		newOutboxCmd(a),
		newRelayCmd(a),
		newAuditCmd(a),
		newCDCCmd(a),
		newVersionCmd(),
	)
	bindEnv(root)
	humanDurationDefaults(root)
	return root
}

// env returns the flag value, else the environment variable, else def.
func (a *app) env(flag, name, def string) string {
	if flag != "" {
		return flag
	}
	if v := a.getenv(name); v != "" {
		return v
	}
	return def
}

// newLogger builds the logger of --log-level and --log-json.
func (a *app) newLogger(def string) (*slog.Logger, error) {
	var level slog.Level
	switch l := strings.ToLower(a.env(a.logLevel, envLogLevel, def)); l {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, usagef("unknown log level %q: use debug, info, warn or error", l)
	}
	opts := &slog.HandlerOptions{Level: level}
	if a.logJSON {
		return slog.New(slog.NewJSONHandler(a.err, opts)), nil
	}
	return slog.New(slog.NewTextHandler(a.err, opts)), nil
}

// connect opens and pings the Redis at url; role names it in errors
// ("queue Redis"). The password never appears in an error.
func (a *app) connect(ctx context.Context, role, url string) (redis.UniversalClient, error) {
	use := redisconn.UseCache
	if role == roleQueue {
		use = redisconn.UseQueue
	}
	return a.connectAs(ctx, role, use, url)
}

// roleQueue names the queue Redis in errors.
const roleQueue = "queue Redis"

// connectAs is connect for a given use. A redis:// URL that leads to a node
// of a Redis Cluster is a usage error (see redisconn.CheckTopology).
func (a *app) connectAs(ctx context.Context, role string, use redisconn.Use, url string) (redis.UniversalClient, error) {
	c, err := redisconn.Open(url)
	if err != nil {
		return nil, &usageError{fmt.Errorf("%s: %w", role, err)}
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := redisconn.Ping(pctx, c, role, url); err != nil {
		_ = c.Close()
		if errors.Is(err, redisconn.ErrAuth) || errors.Is(err, redisconn.ErrNoDB) {
			// The server answered: the URL is what needs fixing.
			return nil, &usageError{err}
		}
		return nil, &unreachableError{err}
	}
	if err := redisconn.CheckTopology(pctx, c, use, role); err != nil {
		if errors.Is(err, redisconn.ErrClusterNode) {
			_ = c.Close()
			return nil, &usageError{err}
		}
		// Not knowing is no reason to refuse: a producer's ACL may deny
		// INFO. The worker, whose family scans depend on it, checks again
		// and refuses then.
		a.log.Debug("could not check the Redis topology", "role", role, "err", err)
	}
	return c, nil
}

func (a *app) queueRedis(ctx context.Context) (redis.UniversalClient, error) {
	return a.connect(ctx, roleQueue, a.env(a.redisURL, envRedisURL, defaultRedisURL))
}

// loadPolicy loads --policy, or the built-in default policy when none is set.
func (a *app) loadPolicy() (*keyspec.Policy, error) {
	path := a.env(a.policy, envPolicy, "")
	if path == "" {
		return keyspec.Default(), nil
	}
	p, err := keyspec.Load(path)
	if err != nil {
		return nil, &usageError{policyLoadError(err)}
	}
	return p, nil
}

// policyLoadError says that the policy did not load. keyspec.Load already
// says so when the file cannot be read; only its validation errors, which
// begin with the file's position, need the prefix.
func policyLoadError(err error) error {
	var verrs keyspec.ValidationErrors
	if errors.As(err, &verrs) {
		return fmt.Errorf("load policy: %w", err)
	}
	return err
}
