package redisconn

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Sentinel options are not visible through the client, so they are checked
// on the parsed config.
func TestParse_Sentinel(t *testing.T) {
	t.Parallel()
	cfg, err := parse("rediss+sentinel://app:m%40ster@s1:26380,s2,[::1]:26381/my%2Dmaster" +
		"?db=3&sentinel_username=sen&sentinel_password=sp&dial_timeout=2s&skip_verify=true")
	require.NoError(t, err)
	require.Nil(t, cfg.standalone)
	require.Nil(t, cfg.cluster)
	o := cfg.sentinel
	require.NotNil(t, o)
	require.Equal(t, "my-master", o.MasterName)
	require.Equal(t, []string{"s1:26380", "s2:26379", "[::1]:26381"}, o.SentinelAddrs)
	require.Equal(t, 3, o.DB)
	require.Equal(t, "app", o.Username)
	require.Equal(t, "m@ster", o.Password)
	require.Equal(t, "sen", o.SentinelUsername)
	require.Equal(t, "sp", o.SentinelPassword)
	require.Equal(t, 2*time.Second, o.DialTimeout)
	require.NotNil(t, o.TLSConfig)
	require.Empty(t, o.TLSConfig.ServerName, "sentinels and master must each be verified against their own name")
	require.True(t, o.TLSConfig.InsecureSkipVerify)
}

func TestParse_SentinelCredentialsFromQuery(t *testing.T) {
	t.Parallel()
	cfg, err := parse("redis+sentinel://s1/m?username=u&password=p")
	require.NoError(t, err)
	require.Equal(t, "u", cfg.sentinel.Username)
	require.Equal(t, "p", cfg.sentinel.Password)
	require.Nil(t, cfg.sentinel.TLSConfig)
	require.Empty(t, cfg.sentinel.SentinelPassword)
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	got := secrets("redis://u:p%40ssword@h/0?sentinel_password=sentinel+pw&a=b&password=no")
	// Raw and decoded forms, longest first; "no" is too short to scrub.
	require.Equal(t, []string{"sentinel pw", "sentinel+pw", "p%40ssword", "p@ssword"}, got)
	require.Empty(t, secrets("not a url"))
	require.Equal(t, []string{"bare-secret"}, secrets("redis://bare-secret@h"))
}

func TestScrub(t *testing.T) {
	t.Parallel()
	require.Equal(t, "dial xxxxx failed: xxxxx",
		scrub("dial p@ssword failed: p%40ssword", []string{"p%40ssword", "p@ssword"}))
}

// serverError is a reply error as go-redis returns it (redis.Error).
type serverError string

func (e serverError) Error() string { return string(e) }
func (serverError) RedisError()     {}

// Refusals of older servers and of cluster nodes, which no test server
// gives, are classified too.
func TestClassify(t *testing.T) {
	t.Parallel()
	for msg, want := range map[string]error{
		"NOAUTH Authentication required.":                               ErrAuth,
		"WRONGPASS invalid username-password pair or user is disabled.": ErrAuth,
		"ERR invalid password":                                          ErrAuth, // Redis < 6
		"ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?": ErrAuth,
		"ERR DB index is out of range":                   ErrNoDB,
		"ERR invalid DB index":                           ErrNoDB, // Redis < 6
		"ERR SELECT is not allowed in cluster mode":      ErrNoDB,
		"LOADING Redis is loading the dataset in memory": nil,
		"ERR unknown command 'PING'":                     nil,
	} {
		require.Equal(t, want, classify(serverError(msg)), msg)
		require.Equal(t, want, classify(fmt.Errorf("wrapped: %w", serverError(msg))), msg)
	}
	require.Nil(t, classify(errors.New("NOAUTH but not from a server")))
}
