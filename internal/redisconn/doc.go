// Package redisconn turns the Redis URLs operators give the CLI and the
// worker into go-redis clients, and keeps their passwords out of errors and
// logs.
//
// One URL names a standalone server, a Redis Cluster, or a Sentinel-managed
// master; Open returns a redis.UniversalClient for each, so the rest of the
// code never cares which:
//
//	redis://[user:password@]host:port[/db][?options]                  standalone
//	rediss://...                                                      standalone over TLS
//	redis+cluster://[user:password@]host:port[,host:port...][?options] Redis Cluster (rediss+cluster:// for TLS)
//	redis+sentinel://[user:password@]host:port[,host:port...]/master-name[?db=N]
//	                                                                  Sentinel (rediss+sentinel:// for TLS)
//
// Options are go-redis's URL options (dial_timeout=3s, pool_size=20, ...).
// Special characters in a user or password must be percent-encoded ('@' as
// %40, '/' as %2F, ':' in a user as %3A). In Sentinel URLs the user and
// password are the master's; sentinels that require a password of their own
// take ?sentinel_username=...&sentinel_password=....
//
// Options that send reads to replicas (read_only, route_by_latency,
// route_randomly, replica_only) are refused: a replica that has not yet
// applied an invalidation serves the stale value it was meant to remove.
//
// A redis:// URL may lead to one node of a Redis Cluster, which answers
// PING like any server. CheckTopology finds that out and says, for the role
// of the connection, what would break; callers treat it as a mistake in the
// URL.
//
// Secrets. net/url and go-redis put the whole URL, password included, into
// some of their errors, so Open never wraps them: every error names the URL
// through Redact, which masks the password as "xxxxx". Ping's errors do the
// same, and say which Redis (queue or cache) failed and what to try; a
// server that answers but refuses the URL's credentials or database gives
// an error matching ErrAuth or ErrNoDB, a mistake in the URL rather than an
// outage:
//
//	c, err := redisconn.Open(rawURL)
//	if err != nil {
//		return err // invalid Redis URL redis://app:xxxxx@cache:6379/x: ...
//	}
//	if err := redisconn.Ping(ctx, c, "cache Redis", rawURL); err != nil {
//		return err
//	}
//	logger.Info("connected", "cache", redisconn.Redact(rawURL))
package redisconn
