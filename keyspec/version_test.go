package keyspec

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// clusterHashTag returns the text Redis Cluster hashes for key: the bytes
// between the first '{' and the first '}' after it when there are any, else
// the whole key. It is written independently of hashTagSpan on purpose.
func clusterHashTag(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 { // no '}' after it, or an empty tag "{}"
		return key
	}
	return key[open+1 : open+1+end]
}

func TestClusterHashTag(t *testing.T) {
	t.Parallel()

	for key, want := range map[string]string{
		"{user1000}.following": "user1000",
		"foo{}{bar}":           "foo{}{bar}",
		"foo{{bar}}zap":        "{bar",
		"foo{bar}{zap}":        "bar",
		"nobraces":             "nobraces",
		"open{only":            "open{only",
		"close}only{":          "close}only{",
	} {
		require.Equal(t, want, clusterHashTag(key), key)
	}
}

func TestVersionKeys(t *testing.T) {
	t.Parallel()

	tagged := mustFamily(t, "feed", "feed:{user_id}", FamilyOptions{Strategy: StrategyVersion, HashTag: "user_id"})
	ver, err := tagged.VersionKey(map[string]string{"user_id": "42"})
	require.NoError(t, err)
	require.Equal(t, "feed:{42}#ver", ver)
	data, err := tagged.DataKey(map[string]string{"user_id": "42"}, 1732700000123)
	require.NoError(t, err)
	require.Equal(t, "feed:{42}#v1732700000123", data)
	require.Equal(t, "42", clusterHashTag(ver))
	require.Equal(t, "42", clusterHashTag(data))

	untagged := mustFamily(t, "catalog", "catalog:{category}", FamilyOptions{Strategy: StrategyVersion})
	ver, err = untagged.VersionKey(map[string]string{"category": "shoes"})
	require.NoError(t, err)
	require.Equal(t, "{catalog:shoes}#ver", ver)
	data, err = untagged.DataKey(map[string]string{"category": "shoes"}, 0)
	require.NoError(t, err)
	require.Equal(t, "{catalog:shoes}#v0", data)
	require.Equal(t, "catalog:shoes", clusterHashTag(ver))
	require.Equal(t, clusterHashTag(ver), clusterHashTag(data))

	// A version family without parameters is one global version.
	global := mustFamily(t, "menu", "menu:all", FamilyOptions{Strategy: StrategyVersion})
	ver, err = global.VersionKey(nil)
	require.NoError(t, err)
	require.Equal(t, "{menu:all}#ver", ver)
}

func TestVersionKeysRefusals(t *testing.T) {
	t.Parallel()

	del := mustFamily(t, "user", "user:{id}", FamilyOptions{})
	_, err := del.VersionKey(map[string]string{"id": "1"})
	require.ErrorIs(t, err, ErrNotVersioned)
	require.ErrorContains(t, err, `version key family "user": family is not versioned: its strategy is "delete"`)
	_, err = del.DataKey(map[string]string{"id": "1"}, 1)
	require.ErrorIs(t, err, ErrNotVersioned)

	feed := mustFamily(t, "feed", "feed:{user_id}", FamilyOptions{Strategy: StrategyVersion})
	pattern, err := feed.Pattern(map[string]string{"user_id": "1"})
	require.ErrorIs(t, err, ErrVersioned)
	require.ErrorContains(t, err, `pattern family "feed": family is versioned`)
	require.Empty(t, pattern)
	_, err = feed.DataKey(map[string]string{"user_id": "1"}, -1)
	require.ErrorContains(t, err, `data key family "feed": version -1 is negative`)
	_, err = feed.VersionKey(nil)
	require.ErrorIs(t, err, ErrMissingParam)
	_, err = feed.DataKey(map[string]string{"user_id": ""}, 1)
	require.ErrorIs(t, err, ErrEmptyParam)

	// "{" + "}x" + "}" starts with the empty tag "{}": Redis would hash the
	// two keys whole, into different slots.
	lead := mustFamily(t, "lead", "{id}:x", FamilyOptions{Strategy: StrategyVersion})
	_, err = lead.VersionKey(map[string]string{"id": "}a"})
	require.ErrorIs(t, err, ErrUnsafeHashTag)
}

// TestVersionKeysShareSlotProperty renders random values, braces included,
// and requires that the version key and data keys always share the hash tag
// Redis Cluster hashes, or that rendering is refused.
func TestVersionKeysShareSlotProperty(t *testing.T) {
	t.Parallel()

	r := rand.New(rand.NewPCG(1, 2))
	families := []*Family{
		mustFamily(t, "a", "feed:{user_id}", FamilyOptions{Strategy: StrategyVersion, HashTag: "user_id"}),
		mustFamily(t, "b", "{tenant}:feed:{user_id}:x", FamilyOptions{Strategy: StrategyVersion, HashTag: "user_id"}),
		mustFamily(t, "c", "{tenant}:feed:{user_id}", FamilyOptions{Strategy: StrategyVersion}),
		mustFamily(t, "d", "feed:{user_id}", FamilyOptions{Strategy: StrategyVersion}),
	}
	refused := 0
	for range 5000 {
		f := families[r.IntN(len(families))]
		params := map[string]string{}
		for _, p := range f.Template.Params() {
			params[p] = randomValue(r, "{}ab:")
		}
		ver, err := f.VersionKey(params)
		if err != nil {
			require.ErrorIs(t, err, ErrUnsafeHashTag)
			refused++
			continue
		}
		tag := clusterHashTag(ver)
		require.NotEqual(t, ver, tag, "version key %q must carry a hash tag", ver)
		for _, v := range []int64{0, 7, 1732700000123} {
			data, err := f.DataKey(params, v)
			require.NoError(t, err)
			require.Equal(t, tag, clusterHashTag(data), "version key %q, data key %q", ver, data)
			require.NotEqual(t, ver, data)
		}
		if f.HashTag != "" {
			require.Equal(t, params[f.HashTag], tag, "the entity's hash tag is the tagged value")
		}
	}
	require.Positive(t, refused, "the generator must produce brace values that are refused")
}

// randomValue returns a non-empty value of 1-6 bytes drawn from alphabet.
func randomValue(r *rand.Rand, alphabet string) string {
	b := make([]byte, 1+r.IntN(6))
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

func TestDataKeyPrefixAndVersionKeyTTL(t *testing.T) {
	t.Parallel()
	f, err := NewFamily("feed", "feed:{user}", FamilyOptions{Strategy: StrategyVersion, HashTag: "user", TTL: time.Minute, Jitter: 0.5})
	require.NoError(t, err)
	params := map[string]string{"user": "42"}
	prefix, err := f.DataKeyPrefix(params)
	require.NoError(t, err)
	key, err := f.DataKey(params, 1234)
	require.NoError(t, err)
	require.Equal(t, prefix+"1234", key)
	require.Equal(t, 3*time.Minute, f.VersionKeyTTL())

	f.TTL = 0
	require.Zero(t, f.VersionKeyTTL())
	d, err := NewFamily("d", "d:{id}", FamilyOptions{})
	require.NoError(t, err)
	_, err = d.DataKeyPrefix(map[string]string{"id": "1"})
	require.ErrorIs(t, err, ErrNotVersioned)
}

// Versions are microseconds of Redis TIME, restarted the margin above it:
// they must stay exact in Lua's doubles (below 2^53) for this century and
// the next, and above 10^14, below which the worker takes a version for a
// millisecond one of an older release.
func TestVersionRestartMarginKeepsVersionsExact(t *testing.T) {
	t.Parallel()
	require.Greater(t, VersionRestartMargin, time.Second, "the margin must absorb a clock step of a second")
	latest := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro() + VersionRestartMargin.Microseconds()
	require.Less(t, latest, int64(1)<<53)
	require.Greater(t, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro(), int64(100_000_000_000_000))
	require.Less(t, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), int64(100_000_000_000_000))
}

func TestVersionKeyPatternAndParse(t *testing.T) {
	t.Parallel()

	tagged := mustFamily(t, "feed", "feed:{user_id}:{lang}", FamilyOptions{Strategy: StrategyVersion, HashTag: "user_id",
		Params: map[string]Param{"user_id": {Match: "[0-9]+"}}})
	untagged := mustFamily(t, "catalog", "catalog:{category}", FamilyOptions{Strategy: StrategyVersion})
	global := mustFamily(t, "menu", "menu:all", FamilyOptions{Strategy: StrategyVersion})
	for _, tc := range []struct {
		f       *Family
		pattern string
		params  map[string]string
	}{
		{tagged, "feed:{*}:*#ver", map[string]string{"user_id": "42", "lang": "en"}},
		{untagged, "{catalog:*}#ver", map[string]string{"category": "shoes"}},
		{global, "{menu:all}#ver", map[string]string{}},
	} {
		p, err := tc.f.VersionKeyPattern()
		require.NoError(t, err)
		require.Equal(t, tc.pattern, p)
		ver, err := tc.f.VersionKey(tc.params)
		require.NoError(t, err)
		got, err := tc.f.ParseVersionKey(ver)
		require.NoError(t, err, ver)
		require.Equal(t, tc.params, got)
		// Data keys and other keys are not version keys.
		data, err := tc.f.DataKey(tc.params, 7)
		require.NoError(t, err)
		_, err = tc.f.ParseVersionKey(data)
		require.ErrorIs(t, err, ErrKeyShape, data)
	}
	for _, key := range []string{"feed:{x}:en#ver", "feed:42:en#ver", "feed:{42}#ver", "catalog:shoes#ver", "{catalog:shoes}", "{catalog:shoes}x#ver"} {
		f := tagged
		if strings.Contains(key, "catalog") {
			f = untagged
		}
		_, err := f.ParseVersionKey(key)
		require.ErrorIs(t, err, ErrKeyShape, key)
	}

	del := mustFamily(t, "product", "product:{id}", FamilyOptions{})
	_, err := del.VersionKeyPattern()
	require.ErrorIs(t, err, ErrNotVersioned)
	_, err = del.ParseVersionKey("{product:1}#ver")
	require.ErrorIs(t, err, ErrNotVersioned)
}

// Keys come from a cache's SCAN: whatever parses as a version key renders
// back to the very same key, tagged or not.
func FuzzParseVersionKey(f *testing.F) {
	tagged, err := NewFamily("f", "a:{x}:b:{y}", FamilyOptions{HashTag: "y", Strategy: StrategyVersion})
	if err != nil {
		f.Fatal(err)
	}
	untagged, err := NewFamily("g", "c:{x}", FamilyOptions{Strategy: StrategyVersion})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("a:1:b:{2}#ver")
	f.Add("{c:1}#ver")
	f.Add("{c:}#ver")
	f.Add("{c:{1}}#ver")
	f.Add("a:1:b:{2}#v7")
	f.Fuzz(func(t *testing.T, key string) {
		for _, fam := range []*Family{tagged, untagged} {
			params, err := fam.ParseVersionKey(key)
			if err != nil {
				continue
			}
			back, err := fam.VersionKey(params)
			if err != nil || back != key {
				t.Fatalf("%s: ParseVersionKey(%q) = %v, which renders %q, %v", fam.Name, key, params, back, err)
			}
		}
	})
}
