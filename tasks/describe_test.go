package tasks

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDescribe(t *testing.T) {
	t.Parallel()

	long := strings.Repeat("a", 100)
	cases := []struct {
		task Task
		want string
	}{
		{DeleteKeys{Keys: []string{"user:1", "user:2", "user:3"}}, `3 keys, first "user:1"`},
		{DeleteKeys{Keys: []string{"user:1"}, Target: "sessions"}, `1 key "user:1" (target sessions)`},
		{DeleteKeys{Keys: []string{"\x00\xff\n\"x"}}, `1 key "\x00\xff\n\"x"`},
		{DeleteKeys{Keys: []string{long}}, `1 key "` + strings.Repeat("a", 64) + `"... (100 bytes)`},
		// A 3-byte rune straddling the cut is not split into escapes.
		{DeleteKeys{Keys: []string{strings.Repeat("a", 63) + "€" + long}},
			`1 key "` + strings.Repeat("a", 63) + `"... (166 bytes)`},
		// Binary keys are cut where they are.
		{DeleteKeys{Keys: []string{strings.Repeat("\x80", 70)}},
			`1 key "` + strings.Repeat(`\x80`, 64) + `"... (70 bytes)`},
		{DeleteFamily{Family: "user_profile", Params: map[string]string{"id": "42"}}, `family=user_profile id=42`},
		{DeleteFamily{Family: "user_profile"}, `family=user_profile`},
		{Event{Name: "product.updated", Attrs: map[string]string{"id": "7", "shop": "a b"}, Target: "eu"},
			`event=product.updated id=7 shop="a b" (target eu)`},
		{BumpVersion{Family: "catalog", Params: map[string]string{"shop": "7", "locale": "en-US"}, Target: "eu"},
			`family=catalog locale=en-US shop=7 (target eu)`},
		{BumpVersion{Family: "user profile", Params: map[string]string{"id": "a b\xff", "email": "a@b.example"}},
			`family="user profile" email=a@b.example id="a b\xff"`},
		{DeleteFamily{Family: "f", Params: map[string]string{"id": long}},
			`family=f id="` + strings.Repeat("a", 64) + `"... (100 bytes)`},
	}
	for _, c := range cases {
		payload, err := Marshal(c.task)
		require.NoError(t, err)
		got := Describe(c.task.Kind(), payload)
		require.Equal(t, c.want, got)
		require.NotContains(t, got, "\n")
	}
}

func TestDescribeBadPayloads(t *testing.T) {
	t.Parallel()

	good, err := Marshal(DeleteKeys{Keys: []string{"user:1"}, EnqueuedAt: time.Now()})
	require.NoError(t, err)

	require.Equal(t, `unknown kind "email:send" (3 bytes)`, Describe("email:send", []byte("abc")))
	require.Equal(t, `unknown kind "\xff\n" (0 bytes)`, Describe("\xff\n", nil))
	require.Equal(t,
		`undecodable payload (17 bytes): bad magic byte 0x7b, want 0xc1 (not written by this package): malformed payload`,
		Describe(KindDeleteKeys, []byte(`{"keys":["user"]}`)))
	require.Equal(t,
		`undecodable payload (3 bytes): format version 7, this build reads up to 1: payload written by a newer format version: upgrade the worker`,
		Describe(KindDeleteKeys, []byte{magic, 7, 1}))
	require.Equal(t,
		`undecodable payload (`+strconv.Itoa(len(good))+` bytes): payload is for invalidate:keys (kind code 1), not this kind: malformed payload`,
		Describe(KindBumpVersion, good))
	require.Equal(t,
		`undecodable payload (6 bytes): no keys: invalid task`,
		Describe(KindDeleteKeys, append(header(codeDeleteKeys), 0)))
}
