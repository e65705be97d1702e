package redisconn

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidURL is wrapped by every error Open returns for a URL it
	// cannot use (test with errors.Is). Such errors show the URL only through
	// Redact.
	ErrInvalidURL = errors.New("invalid Redis URL")

	// ErrAuth is wrapped by Ping's error when the server answered but
	// refused the URL's user or password (NOAUTH, WRONGPASS): the URL is
	// wrong, the server is not down.
	ErrAuth = errors.New("the server refused the Redis URL's credentials")

	// ErrNoDB is wrapped by Ping's error when the server answered but has no
	// database of the URL's number (ERR DB index is out of range), or allows
	// none but 0 (a cluster node): the URL is wrong, the server is not down.
	ErrNoDB = errors.New("the server has no database of the Redis URL's number")
)

// The URL forms each error suggests.
const (
	formStandalone = "redis://[user:password@]host:port[/db][?options] (rediss:// for TLS)"
	formCluster    = "redis+cluster://[user:password@]host:port[,host:port...][?options] (rediss+cluster:// for TLS)"
	formSentinel   = "redis+sentinel://[user:password@]host:port[,host:port...]/master-name[?db=N] (rediss+sentinel:// for TLS)"
	formAny        = "redis://, rediss://, redis+cluster://, rediss+cluster://, redis+sentinel:// or rediss+sentinel://"
)

// invalid builds the error for an unusable URL: the redacted URL, why it is
// unusable, and the form expected. The message is also scrubbed of the URL's
// secrets, in case a reason quoted a part of the input.
func invalid(rawURL, form, format string, args ...any) error {
	msg := fmt.Sprintf("%s: %s; expected %s", Redact(rawURL), fmt.Sprintf(format, args...), form)
	return fmt.Errorf("%w %s", ErrInvalidURL, scrub(msg, secrets(rawURL)))
}
