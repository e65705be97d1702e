package redisconn_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redisconn"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"redis://app:s3cret@h:6379/2", "redis://app:xxxxx@h:6379/2"},
		{"redis://:s3cret@h:6379", "redis://:xxxxx@h:6379"},
		{"redis://h:6379/0?dial_timeout=3s", "redis://h:6379/0?dial_timeout=3s"},
		{"redis://app:@h", "redis://app:xxxxx@h"},
		{"redis://s3cret@h", "redis://xxxxx@h"}, // redis-cli reads a bare userinfo as a password
		{"REDIS://:s3cret@h", "redis://:xxxxx@h"},
		{"  redis://:s3cret@h\n", "redis://:xxxxx@h"},
		{"rediss+cluster://u:p%40ss@a:1,b:2?dial_timeout=3s", "rediss+cluster://u:xxxxx@a:1,b:2?dial_timeout=3s"},
		{"redis+sentinel://:pw@s1:26379,s2:26379/mymaster?db=1&sentinel_password=sp",
			"redis+sentinel://:xxxxx@s1:26379,s2:26379/mymaster?db=1&sentinel_password=xxxxx"},
		{"redis://h?Password=s3cret&pass%77ord=s3cret&a=b", "redis://h?Password=xxxxx&pass%77ord=xxxxx&a=b"},
		// Passwords with unencoded '@', '/', '?', '#' stay wholly masked.
		{"redis://:s3@cr@et@h:6379", "redis://:xxxxx@h:6379"},
		{"redis://:s3/cr?e#t@h:6379/0", "redis://:xxxxx@h:6379/0"},
		// URLs Open rejects are still redacted, so errors can show them.
		{"redis://:s3cret@h:bad", "redis://:xxxxx@h:bad"},
		{"redis://:s3%zzcret@h", "redis://:xxxxx@h"},
		{"redis://h:1#s3cret", "redis://h:1#xxxxx"},
	} {
		require.Equal(t, tc.want, redisconn.Redact(tc.in), "Redact(%q)", tc.in)
	}
}

func TestRedact_UnparseableNeverEchoed(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"",
		"s3cret",
		":s3cret@h:6379",
		"redis::s3cret@h:6379",
		"redis:s3cret@h",
		"1redis://:s3cret@h",
		"re dis://:s3cret@h",
		"redis://:s3cret\n@h", // a newline could forge log lines
		"redis://:s3cret@h\x00",
	} {
		require.Equal(t, "<invalid redis URL>", redisconn.Redact(in), "Redact(%q)", in)
	}
}

// FuzzRedact checks that a password never survives Redact, whatever
// surrounds it.
func FuzzRedact(f *testing.F) {
	f.Add("redis", "user", "s3cret", "h:6379", "/0?dial_timeout=3s")
	f.Add("redis+cluster", "", "p@ss/w?rd#", "a:1,b:2", "")
	f.Add("rediss+sentinel", "u", "pw", "s:26379", "/m?sentinel_password=x")
	f.Fuzz(func(t *testing.T, scheme, user, pass, hosts, tail string) {
		if len(pass) < 4 {
			return
		}
		rest := scheme + "://" + user + ":xxxxx@" + hosts + tail
		if strings.Contains(rest, pass) || strings.Contains(unescaped(rest), pass) {
			return // the "password" also appears where it is no secret
		}
		raw := scheme + "://" + user + ":" + pass + "@" + hosts + tail
		require.NotContains(t, redisconn.Redact(raw), pass)
		if _, err := redisconn.Open(raw); err != nil {
			require.NotContains(t, err.Error(), pass)
		}
	})
}

// unescaped undoes percent-encoding as far as it is valid.
func unescaped(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}
