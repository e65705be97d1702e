package redisconn

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

const (
	// hintDown is what to try when a server does not answer.
	hintDown = "is redis-server running there? check the URL given with --redis or --cache-redis, or INVALIDATOR_REDIS_URL / INVALIDATOR_CACHE_REDIS_URL"
	// hintAuth is what to try when a server refuses the credentials.
	hintAuth = "check the user and password in the URL"
)

// Ping checks that the server behind c answers within ctx. On failure the
// error names the role ("queue Redis", "cache Redis"), the redacted URL, the
// cause and what to try, e.g.
//
//	queue Redis redis://:xxxxx@127.0.0.1:6379/0 did not answer PING: dial tcp 127.0.0.1:6379: connect: connection refused (is redis-server running there? check the URL given with --redis or --cache-redis, or INVALIDATOR_REDIS_URL / INVALIDATOR_CACHE_REDIS_URL)
//
// The cause stays reachable for errors.Is (context.DeadlineExceeded, ...).
func Ping(ctx context.Context, c redis.UniversalClient, role, rawURL string) error {
	err := c.Ping(ctx).Err()
	if err == nil {
		return nil
	}
	cause := scrub(err.Error(), secrets(rawURL))
	return &pingError{
		msg: fmt.Sprintf("%s %s did not answer PING: %s (%s)", role, Redact(rawURL), cause, hint(cause)),
		err: err,
	}
}

// hint says what to try for a PING failure.
func hint(cause string) string {
	for _, s := range []string{"NOAUTH", "WRONGPASS", "invalid password", "invalid username-password", "AUTH"} {
		if strings.Contains(cause, s) {
			return hintAuth
		}
	}
	return hintDown
}

// pingError carries a message built from the scrubbed cause, while Unwrap
// keeps the cause itself for errors.Is and errors.As.
type pingError struct {
	msg string
	err error
}

func (e *pingError) Error() string { return e.msg }
func (e *pingError) Unwrap() error { return e.err }
