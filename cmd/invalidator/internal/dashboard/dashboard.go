package dashboard

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"
)

// RootPath is where the dashboard serves asynqmon; "/" redirects here.
const RootPath = "/monitoring"

// DefaultAddr is the listen address a Config without Addr describes:
// loopback, so a dashboard started with no settings is never exposed.
const DefaultAddr = "127.0.0.1:8080"

// Errors returned by Config.Validate and New.
var (
	// ErrAuthRequired: the address is reachable from other machines and no
	// credentials are set. Set a user name and password, or bind to loopback.
	ErrAuthRequired = errors.New("credentials required")
	// ErrBadCredentials: only one of user name and password is set, or the
	// user name holds a ':' (basic auth could never match it).
	ErrBadCredentials = errors.New("incomplete or invalid credentials")
	// ErrBadAddr: Addr is not host:port.
	ErrBadAddr = errors.New("invalid listen address")
	// ErrNoRedis: Config.Redis is nil.
	ErrNoRedis = errors.New("no queue Redis client (set Config.Redis)")
)

// Config configures the dashboard handler. The zero value plus Redis is a
// read-only, payload-redacted dashboard for loopback without authentication.
type Config struct {
	// Redis is the queue Redis that asynq uses. Required. The dashboard only
	// reads through it (and writes when AllowWrites is set) and never closes
	// it: the caller owns it.
	Redis redis.UniversalClient
	// Addr is the address the handler will be served on. It decides whether
	// credentials are required: anything but loopback (127.0.0.0/8, ::1,
	// localhost) needs them. Default DefaultAddr.
	Addr string
	// Username and Password enable HTTP basic auth; set both or neither.
	// Default: none, allowed on loopback only, and then only requests whose
	// Host is loopback (localhost, 127.0.0.0/8, [::1]) are served, against
	// DNS rebinding. Neither ever appears in a log line or an error.
	Username, Password string
	// AllowWrites lets the UI retry, run, archive and delete tasks and pause
	// queues. Writes must then come from a same-origin page (CSRF check).
	// Default false: every write under RootPath/api/ is refused.
	AllowWrites bool
	// ShowPayloads shows full decoded payloads. Default false: the UI shows
	// the kind, family, key count and first key only.
	ShowPayloads bool
	// Logger receives startup notes, refused requests and writes made through
	// the UI. Default: discard.
	Logger *slog.Logger
}

func (c Config) addr() string {
	if c.Addr == "" {
		return DefaultAddr
	}
	return c.Addr
}

func (c Config) hasAuth() bool { return c.Username != "" || c.Password != "" }

// ValidateAccess makes the checks of Validate that concern who can reach the
// dashboard (address and credentials), without needing Redis: a command runs
// it before connecting, so a refusal is immediate and says why.
func (c Config) ValidateAccess() error {
	loopback, err := IsLoopback(c.addr())
	if err != nil {
		return err
	}
	if (c.Username == "") != (c.Password == "") {
		return fmt.Errorf("set both a user name and a password, or neither: %w", ErrBadCredentials)
	}
	if strings.Contains(c.Username, ":") {
		return fmt.Errorf("user name contains ':', which basic auth cannot carry: %w", ErrBadCredentials)
	}
	if !loopback && !c.hasAuth() {
		return fmt.Errorf("address %q is not loopback, so other machines can reach it, and asynqmon has no authentication of its own: %w",
			c.addr(), ErrAuthRequired)
	}
	return nil
}

// Validate reports whether New would accept c.
func (c Config) Validate() error {
	if err := c.ValidateAccess(); err != nil {
		return err
	}
	if c.Redis == nil {
		return ErrNoRedis
	}
	return nil
}

// IsLoopback reports whether the listen address addr (host:port) accepts
// connections from this machine only. An empty host, an unspecified address
// (0.0.0.0, ::) and any host name but localhost are not loopback: a name may
// resolve to anything.
func IsLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("address %q: want host:port, e.g. %s: %w", addr, DefaultAddr, ErrBadAddr)
	}
	return isLoopbackHost(host), nil
}

// isLoopbackHost reports whether host (no port, no brackets) is localhost or
// a loopback IP address (127.0.0.0/8, ::1, or either mapped into IPv6).
func isLoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return ip.Unmap().IsLoopback()
}

// New returns the dashboard handler: asynqmon under RootPath behind basic
// auth (when credentials are set) or the loopback Host check (when they are
// not), the method and same-origin guard, payload redaction and security
// headers, and a redirect from "/" to RootPath.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("subsystem", "dashboard")

	// asynqmon's Close would close the caller's client, so the handler is
	// never closed: the caller closes cfg.Redis when done.
	mon := asynqmon.New(asynqmon.Options{
		RootPath:         RootPath,
		RedisConnOpt:     sharedClient{cfg.Redis},
		PayloadFormatter: payloadFormatter(cfg.ShowPayloads),
		ResultFormatter:  resultFormatter(cfg.ShowPayloads),
		ReadOnly:         !cfg.AllowWrites,
	})
	mux := http.NewServeMux()
	var api http.Handler = mon
	if !cfg.ShowPayloads {
		// Errors name keys and values too ("Last Error"): hidden like
		// the payloads they come from.
		api = redactErrors(mon)
	}
	mux.Handle(RootPath+"/", api)
	mux.Handle("GET /{$}", http.RedirectHandler(RootPath+"/", http.StatusFound))

	h := guard(mux, cfg.AllowWrites, log)
	if cfg.hasAuth() {
		h = basicAuth(h, cfg.Username, cfg.Password, log)
	} else {
		// Without credentials, the loopback bind is the only access control,
		// and DNS rebinding gets around it: only loopback Host headers pass.
		log.Info("no dashboard credentials set; serving without authentication, to this machine only, for loopback Host names only", "addr", cfg.addr())
		h = loopbackHostOnly(h, cfg.addr(), log)
	}
	return securityHeaders(h), nil
}

// sharedClient hands asynqmon the caller's client instead of letting it dial
// its own, so every Redis access goes through one redis.UniversalClient
// (standalone, Sentinel or Cluster alike).
type sharedClient struct{ c redis.UniversalClient }

// MakeRedisClient implements asynq.RedisConnOpt.
func (s sharedClient) MakeRedisClient() any { return s.c }
