package redisconn

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

const (
	// hintDown is what to try when a server does not answer.
	hintDown = "is redis-server running there? check the URL given with --redis or --cache-redis, or INVALIDATOR_REDIS_URL / INVALIDATOR_CACHE_REDIS_URL"
	// hintAuth is what to try when a server refuses the credentials.
	hintAuth = "check the user and password in the URL, percent-encoded (a Sentinel's own password goes in ?sentinel_password=)"
	// hintNoAuth is what to try when a server wants a password and the URL
	// gives none.
	hintNoAuth = "put it in the URL, percent-encoded: redis://:PASSWORD@host:port/db, or redis://USER:PASSWORD@host:port/db for an ACL user"
	// hintDB is what to try when a server has no database of that number.
	hintDB = "use a number below the server's 'databases' setting (16 by default; a Redis Cluster has only database 0), or leave it out for 0"
)

// Ping checks that the server behind c answers within ctx. On failure the
// error names the role ("queue Redis", "cache Redis"), the redacted URL, the
// cause and what to try, e.g.
//
//	queue Redis redis://:xxxxx@127.0.0.1:6379/0 did not answer PING: dial tcp 127.0.0.1:6379: connect: connection refused (is redis-server running there? check the URL given with --redis or --cache-redis, or INVALIDATOR_REDIS_URL / INVALIDATOR_CACHE_REDIS_URL)
//
// A server that answers but refuses the URL's credentials gives an error
// matching ErrAuth, and one without the URL's database an error matching
// ErrNoDB: both are mistakes in the URL, which callers report as such.
// The cause stays reachable for errors.Is (context.DeadlineExceeded, ...).
func Ping(ctx context.Context, c redis.UniversalClient, role, rawURL string) error {
	err := c.Ping(ctx).Err()
	if err == nil {
		return nil
	}
	cause := scrub(err.Error(), secrets(rawURL))
	url := Redact(rawURL)
	switch kind := classify(err); kind {
	case ErrAuth:
		what, hint := "refused the credentials", hintAuth
		if strings.HasPrefix(cause, "NOAUTH") {
			what, hint = "requires a password and the URL gives none", hintNoAuth
		}
		return &pingError{msg: fmt.Sprintf("%s %s %s: %s; %s", role, url, what, strings.TrimSuffix(cause, "."), hint), err: err, kind: kind}
	case ErrNoDB:
		db := "of that number"
		if n, ok := dbNumber(c); ok {
			db = strconv.Itoa(n)
		}
		return &pingError{msg: fmt.Sprintf("%s %s has no database %s: %s; %s", role, url, db, strings.TrimSuffix(cause, "."), hintDB), err: err, kind: kind}
	}
	return &pingError{
		msg: fmt.Sprintf("%s %s did not answer PING: %s (%s)", role, url, cause, hintDown),
		err: err,
	}
}

// classify returns ErrAuth or ErrNoDB for a server's refusal of the
// connection's settings, else nil. Redis before 6 says "ERR invalid
// password" and "ERR invalid DB index"; a cluster node refuses SELECT.
func classify(err error) error {
	var re redis.Error
	if !errors.As(err, &re) {
		return nil
	}
	msg := re.Error()
	switch {
	case redis.IsAuthError(err), strings.HasPrefix(msg, "NOAUTH "), strings.HasPrefix(msg, "WRONGPASS "),
		strings.HasPrefix(msg, "ERR invalid password"),
		strings.HasPrefix(msg, "ERR AUTH") && strings.Contains(msg, "without any password configured"):
		return ErrAuth
	case strings.HasPrefix(msg, "ERR DB index is out of range"), strings.HasPrefix(msg, "ERR invalid DB index"),
		strings.HasPrefix(msg, "ERR SELECT is not allowed in cluster mode"):
		return ErrNoDB
	}
	return nil
}

// dbNumber is the database a standalone or Sentinel client selects.
func dbNumber(c redis.UniversalClient) (int, bool) {
	if rc, ok := c.(*redis.Client); ok {
		return rc.Options().DB, true
	}
	return 0, false
}

// pingError carries a message built from the scrubbed cause, while Unwrap
// keeps the cause itself for errors.Is and errors.As; kind is ErrAuth,
// ErrNoDB or nil.
type pingError struct {
	msg  string
	err  error
	kind error
}

func (e *pingError) Error() string { return e.msg }
func (e *pingError) Unwrap() error { return e.err }

func (e *pingError) Is(target error) bool { return e.kind != nil && target == e.kind }
