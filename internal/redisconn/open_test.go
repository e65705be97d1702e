package redisconn_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redisconn"
	"github.com/invalidator/invalidator/internal/redistest"
)

// secret is the password of every URL in the error tests.
const secret = "S3cr3tPw"

func TestOpen_StandaloneReachesTheDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := redistest.NewDB(t)

	c, err := redisconn.Open(db.URL + "?dial_timeout=3s&client_name=redisconn-test")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	require.NoError(t, redisconn.Ping(ctx, c, "queue Redis", db.URL))

	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	v, err := db.Client.Get(ctx, "k").Result()
	require.NoError(t, err, "the key must land in database %d", db.Index)
	require.Equal(t, "v", v)
}

func TestOpen_StandaloneOptions(t *testing.T) {
	t.Parallel()
	c, err := redisconn.Open("redis://app:p%40ss:word@cache.internal:6380/3?dial_timeout=3&read_timeout=2s&pool_size=7")
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	rc, ok := c.(*redis.Client)
	require.True(t, ok, "got %T", c)
	o := rc.Options()
	require.Equal(t, "cache.internal:6380", o.Addr)
	require.Equal(t, 3, o.DB)
	require.Equal(t, "app", o.Username)
	require.Equal(t, "p@ss:word", o.Password)
	require.Equal(t, 3*time.Second, o.DialTimeout)
	require.Equal(t, 2*time.Second, o.ReadTimeout)
	require.Equal(t, 7, o.PoolSize)
	require.Nil(t, o.TLSConfig)
}

func TestOpen_StandaloneVariants(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, addr string
		db        int
		password  string
	}{
		{"redis://h", "h:6379", 0, ""},
		{"redis://h:6380/", "h:6380", 0, ""},
		{"redis://h:6380/0/", "h:6380", 0, ""},
		{"redis://h/4?db=5", "h:6379", 5, ""}, // go-redis: ?db= wins
		{"redis://[::1]:6380/1", "[::1]:6380", 1, ""},
		{"redis://[fe80::1%25eth0]", "[fe80::1%eth0]:6379", 0, ""},
		{"redis://:" + "a@b" + "@h", "h:6379", 0, "a@b"}, // an unencoded '@' in a password still works
		{"  redis://h  ", "h:6379", 0, ""},
	} {
		c, err := redisconn.Open(tc.url)
		require.NoError(t, err, tc.url)
		o := c.(*redis.Client).Options()
		require.Equal(t, tc.addr, o.Addr, tc.url)
		require.Equal(t, tc.db, o.DB, tc.url)
		require.Equal(t, tc.password, o.Password, tc.url)
		require.NoError(t, c.Close())
	}
}

func TestOpen_TLS(t *testing.T) {
	t.Parallel()
	c, err := redisconn.Open("rediss://:pw@cache.example.com:6380?skip_verify=true")
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	o := c.(*redis.Client).Options()
	require.NotNil(t, o.TLSConfig)
	require.Equal(t, "cache.example.com", o.TLSConfig.ServerName)
	require.True(t, o.TLSConfig.InsecureSkipVerify)
}

func TestOpen_ClusterReachesEveryMaster(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	addrs := redistest.ClusterAddrs(t)
	p := redistest.Prefix(t)

	for _, u := range []string{
		"redis+cluster://" + strings.Join(addrs, ","),
		"redis+cluster://" + addrs[0] + "?dial_timeout=2s", // the cluster tells the client about the others
		"redis+cluster://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2],
	} {
		c, err := redisconn.Open(u)
		require.NoError(t, err, u)
		cc, ok := c.(*redis.ClusterClient)
		require.True(t, ok, "got %T", c)
		require.NoError(t, redisconn.Ping(ctx, c, "cache Redis", u))

		var masters atomic.Int32
		require.NoError(t, cc.ForEachMaster(ctx, func(context.Context, *redis.Client) error {
			masters.Add(1)
			return nil
		}), u)
		require.EqualValues(t, 3, masters.Load(), u)
		for _, k := range []string{"a", "b", "c", "d", "e"} {
			require.NoError(t, c.Set(ctx, p+":"+k, k, 0).Err(), u)
			v, err := redistest.Cluster(t).Get(ctx, p+":"+k).Result()
			require.NoError(t, err, u)
			require.Equal(t, k, v, u)
		}
		require.NoError(t, c.Close())
	}
}

func TestOpen_ClusterOptions(t *testing.T) {
	t.Parallel()
	c, err := redisconn.Open("rediss+cluster://app:pw@a.example:7000,b.example:7001?addr=c.example:7002&dial_timeout=2s")
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	cc, ok := c.(*redis.ClusterClient)
	require.True(t, ok, "got %T", c)
	o := cc.Options()
	require.Equal(t, []string{"a.example:7000", "b.example:7001", "c.example:7002"}, o.Addrs)
	require.Equal(t, "app", o.Username)
	require.Equal(t, "pw", o.Password)
	require.Equal(t, 2*time.Second, o.DialTimeout)
	require.NotNil(t, o.TLSConfig)
	require.Empty(t, o.TLSConfig.ServerName, "each node must be verified against its own name")
}

func TestOpen_Sentinel(t *testing.T) {
	t.Parallel()
	c, err := redisconn.Open("redis+sentinel://:pw@s1:26379,s2/mymaster?db=2")
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	rc, ok := c.(*redis.Client)
	require.True(t, ok, "got %T", c)
	o := rc.Options()
	require.Equal(t, 2, o.DB)
	require.Equal(t, "pw", o.Password)
}

func TestOpen_ErrorsNeverContainThePassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, url, reason string }{
		{"empty", "", "does not start with a scheme"},
		{"bad scheme", "http://:" + secret + "@h:6379", `unsupported scheme "http"`},
		{"unix scheme", "unix://:" + secret + "@/tmp/redis.sock", `unsupported scheme "unix"`},
		{"missing scheme", ":" + secret + "@h:6379", "does not start with a scheme"},
		{"missing slashes", "redis::" + secret + "@h:6379", "does not start with a scheme"},
		{"control character", "redis://:" + secret + "@h:6379\x00", "control characters"},
		{"bad port", "redis://:" + secret + "@h:bad", "port must be a number"},
		{"port out of range", "redis://:" + secret + "@h:70000", "port must be a number"},
		{"empty port", "redis://:" + secret + "@h:", "port must be a number"},
		{"signed port", "redis://:" + secret + "@h:+80", "port must be a number"},
		{"missing host", "redis://:" + secret + "@:6379", "missing host"},
		{"no host at all", "redis://:" + secret + "@/0", "missing host"},
		{"bad host", "redis://:" + secret + "@h*st:6379", `invalid host "h*st"`},
		{"IPv6 without brackets", "redis://:" + secret + "@::1:6379", "must be in brackets"},
		{"bad IPv6", "redis://:" + secret + "@[zz]:6379", "invalid IPv6"},
		{"bad db", "redis://:" + secret + "@h:6379/abc", "database (the path) must be a non-negative number"},
		{"negative db", "redis://:" + secret + "@h:6379/-1", "non-negative number"},
		{"db with two segments", "redis://:" + secret + "@h:6379/1/2", "non-negative number"},
		{"bad db option", "redis://:" + secret + "@h:6379?db=x", `option "db" must be a non-negative number`},
		{"unknown option", "redis://:" + secret + "@h:6379?bogus=1", `unknown option "bogus"`},
		{"bad duration", "redis://:" + secret + "@h:6379?dial_timeout=soon", `option "dial_timeout" has an invalid value`},
		{"bad number", "redis://:" + secret + "@h:6379?pool_size=many", `option "pool_size" has an invalid value`},
		{"bad boolean", "redis://:" + secret + "@h:6379?pool_fifo=maybe", `option "pool_fifo" has an invalid value`},
		{"password as option", "redis://h:6379?password=" + secret, `unknown option "password" (credentials go before the host`},
		{"malformed query", "redis://:" + secret + "@h:6379?a=%zz", "query string is malformed"},
		{"out of range option", "redis://:" + secret + "@h:6379?pool_size=99999999999", "go-redis refused the options"},
		{"unencoded slash", "redis://:S3cr/3tPw@h:6379", "percent-encode"},
		{"unencoded question mark", "redis://:S3cr?3tPw@h:6379", "percent-encode"},
		{"bad escape", "redis://:S3cr%zz3tPw@h:6379", "malformed %-escape"},
		{"bare userinfo", "redis://" + secret + "@h:6379", "credentials must be written user:password@"},
		{"fragment", "redis://:" + secret + "@h:6379#x", "fragment"},
		{"standalone with two hosts", "redis://:" + secret + "@a:1,b:2", "names one server"},
		{"cluster bad port", "redis+cluster://:" + secret + "@a:1,b:bad", "port must be a number"},
		{"cluster empty entry", "redis+cluster://:" + secret + "@a:1,,b:2", "empty entry"},
		{"cluster bad addr option", "redis+cluster://:" + secret + "@a:1?addr=b:x", "port must be a number"},
		{"cluster db path", "redis+cluster://:" + secret + "@a:1/0", "only database 0"},
		{"cluster db option", "redis+cluster://:" + secret + "@a:1?db=1", "only database 0"},
		{"cluster unknown option", "redis+cluster://:" + secret + "@a:1?bogus=1", `unknown option "bogus"`},
		{"cluster replica reads", "redis+cluster://:" + secret + "@a:1?read_only=true", `option "read_only" sends reads to replicas`},
		{"sentinel missing master", "redis+sentinel://:" + secret + "@s:26379", "missing master name"},
		{"sentinel nested master", "redis+sentinel://:" + secret + "@s:26379/a/b", "missing master name"},
		{"sentinel master option", "redis+sentinel://:" + secret + "@s:26379/m?master_name=n", "master name as the path only"},
		{"sentinel bad db", "redis+sentinel://:" + secret + "@s:26379/m?db=x", `option "db" must be a non-negative number`},
		{"sentinel credentials twice", "redis+sentinel://:" + secret + "@s:26379/m?password=" + secret, "given twice"},
		{"sentinel unknown option", "redis+sentinel://:" + secret + "@s:26379/m?bogus=1", `unknown option "bogus"`},
		{"sentinel bad option value", "redis+sentinel://:" + secret + "@s:26379/m?sentinel_password=x&read_timeout=x", `option "read_timeout" has an invalid value`},
		{"sentinel replica reads", "redis+sentinel://:" + secret + "@s:26379/m?route_by_latency=1", "sends reads to replicas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := redisconn.Open(tc.url)
			require.Error(t, err)
			require.Nil(t, c)
			require.ErrorIs(t, err, redisconn.ErrInvalidURL)
			msg := err.Error()
			for _, piece := range []string{secret, "S3cr", "3tPw"} {
				require.NotContains(t, msg, piece)
			}
			require.Contains(t, msg, tc.reason)
			require.Contains(t, msg, "; expected ")
		})
	}
}

func TestPing_UnreachableNamesRoleURLAndRemedy(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close()) // nothing listens there now

	raw := "redis://app:" + secret + "@" + addr + "/0?dial_timeout=1s"
	c, err := redisconn.Open(raw)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = redisconn.Ping(ctx, c, "queue Redis", raw)
	require.Error(t, err)
	msg := err.Error()
	require.NotContains(t, msg, secret)
	require.True(t, strings.HasPrefix(msg, "queue Redis redis://app:xxxxx@"+addr+"/0?dial_timeout=1s did not answer PING: "), msg)
	require.Contains(t, msg, "connection refused")
	require.Contains(t, msg, "is redis-server running there? check the URL given with --redis or --cache-redis, or INVALIDATOR_REDIS_URL / INVALIDATOR_CACHE_REDIS_URL")
	var opErr *net.OpError
	require.True(t, errors.As(err, &opErr), "the cause must stay reachable: %v", err)
}

func TestPing_WrongPasswordSaysCheckCredentials(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	// The test server's default user takes any password; an unknown user
	// is refused.
	raw := strings.Replace(db.URL, "redis://", "redis://nobody:"+secret+"@", 1)
	c, err := redisconn.Open(raw)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	err = redisconn.Ping(t.Context(), c, "cache Redis", raw)
	require.Error(t, err)
	msg := err.Error()
	require.NotContains(t, msg, secret)
	require.True(t, strings.HasPrefix(msg, "cache Redis redis://nobody:xxxxx@"), msg)
	require.Contains(t, msg, "check the user and password in the URL")
}

func TestPing_CanceledContext(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	c, err := redisconn.Open(db.URL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err = redisconn.Ping(ctx, c, "queue Redis", db.URL)
	require.ErrorIs(t, err, context.Canceled)
}
