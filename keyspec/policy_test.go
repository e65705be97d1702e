package keyspec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// parseErrors parses src and returns its validation errors, failing the test
// if it parses.
func parseErrors(t *testing.T, src string) ValidationErrors {
	t.Helper()
	p, err := Parse("policy.yaml", []byte(src))
	require.Error(t, err)
	require.Nil(t, p)
	var verrs ValidationErrors
	require.ErrorAs(t, err, &verrs)
	require.NotEmpty(t, verrs)
	return verrs
}

func TestDefault(t *testing.T) {
	t.Parallel()

	p := Default()
	require.Equal(t, "default", p.DefaultClass)
	require.Empty(t, p.Families)
	require.Equal(t, []string{"invalidator-default"}, p.Queues())
	c, err := p.Class("default")
	require.NoError(t, err)
	require.Equal(t, &Class{
		Name: "default", Queue: "invalidator-default", MaxRetry: 10,
		Timeout: 30 * time.Second, BackoffBase: 250 * time.Millisecond, BackoffMax: time.Minute, Weight: 1, Shards: 1,
	}, c)
	_, err = p.Family("user")
	require.ErrorIs(t, err, ErrUnknownFamily)
	require.ErrorContains(t, err, `unknown family "user" in the built-in policy (declared: none)`)
}

func TestParseAppliesDefaults(t *testing.T) {
	t.Parallel()

	p, err := Parse("p.yaml", []byte(`
version: 1
classes:
  critical: {ttl: 1m, jitter: 0.1, max_retry: 0, timeout: 10s, backoff_base: 100ms, backoff_max: 30s, queue: prio}
  standard:
families:
  user:
    template: "user:{id}:profile"
    class: standard
  price:
    template: "price:{sku}"
    class: critical
    ttl: 30s
    jitter: 0
    strategy: version
    hash_tag: sku
    owner: pricing
`))
	require.NoError(t, err)
	require.Equal(t, "p.yaml", p.Source)
	require.Equal(t, "standard", p.DefaultClass, "standard is the default class when present")
	require.Equal(t, &Class{
		Name: "critical", TTL: time.Minute, Jitter: 0.1, Queue: "prio", MaxRetry: 0,
		Timeout: 10 * time.Second, BackoffBase: 100 * time.Millisecond, BackoffMax: 30 * time.Second, Weight: 1, Shards: 1,
	}, p.Classes["critical"])
	require.Equal(t, NewClass("standard"), p.Classes["standard"])
	require.Equal(t, []string{"invalidator-standard", "prio"}, p.Queues())

	user, err := p.Family("user")
	require.NoError(t, err)
	require.Equal(t, StrategyDelete, user.Strategy)
	require.Equal(t, time.Duration(0), user.TTL)
	require.Same(t, p.Classes["standard"], p.ClassOf(user))

	price, err := p.Family("price")
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, price.TTL, "family ttl overrides the class")
	require.Zero(t, price.Jitter, "an explicit jitter of 0 overrides the class")
	require.Equal(t, StrategyVersion, price.Strategy)
	require.Equal(t, "sku", price.HashTag)
	require.Equal(t, "pricing", price.Owner)
	require.Same(t, p.Classes["critical"], p.ClassOf(price))
}

func TestParseDefaultClass(t *testing.T) {
	t.Parallel()

	p, err := Parse("p.yaml", []byte("version: 1\nclasses:\n  only: {}\n"))
	require.NoError(t, err)
	require.Equal(t, "only", p.DefaultClass, "the only class is the default")

	p, err = Parse("p.yaml", []byte("version: 1\ndefault_class: b\nclasses:\n  a: {}\n  b: {}\n"))
	require.NoError(t, err)
	require.Equal(t, "b", p.DefaultClass)

	verrs := parseErrors(t, "version: 1\nclasses:\n  a: {}\n  b: {}\n")
	require.Equal(t, `policy.yaml:1:1: default_class: is required when there are several classes and none is named "standard"; set it to one of: a, b`, verrs.Error())
}

func TestParseAnchors(t *testing.T) {
	t.Parallel()

	p, err := Parse("p.yaml", []byte(`
version: 1
classes:
  standard: &std {ttl: 5m}
  other: *std
families:
  a: &fam {template: "a:{id}", class: standard}
`))
	require.NoError(t, err)
	require.Equal(t, 5*time.Minute, p.Classes["other"].TTL)
	require.Equal(t, "invalidator-other", p.Classes["other"].Queue)
	require.Equal(t, 5*time.Minute, p.Families["a"].TTL)
}

// TestParseReportsEveryError checks that one file with many problems gets all
// of them, in file order, each at the right line and column.
func TestParseReportsEveryError(t *testing.T) {
	t.Parallel()

	src := strings.Join([]string{
		/*  1 */ "version: 1",
		/*  2 */ "colour: blue",
		/*  3 */ "classes:",
		/*  4 */ "  standard:",
		/*  5 */ "    ttl: 10",
		/*  6 */ "    jitter: 0.7",
		/*  7 */ "  Critical: {timeout: 0s, backoff_base: 2s, backoff_max: 1s}",
		/*  8 */ "families:",
		/*  9 */ "  user_profile:",
		/* 10 */ "    template: \"user:{id:profile\"",
		/* 11 */ "    class: standart",
		/* 12 */ "  feed:",
		/* 13 */ "    template: \"feed:{user_id}\"",
		/* 14 */ "    class: standard",
		/* 15 */ "    strategy: versioned",
		/* 16 */ "    hash_tag: uid",
		/* 17 */ "  orphan:",
		/* 18 */ "    template: \"o:{id}\"",
		/* 19 */ "    ttl: -5m",
		/* 20 */ "    max_retry: 3",
	}, "\n") + "\n"

	verrs := parseErrors(t, src)
	got := make([]string, len(verrs))
	for i, e := range verrs {
		got[i] = fmt.Sprintf("%d:%d %s", e.Line, e.Column, e.Field)
		require.Equal(t, "policy.yaml", e.File)
	}
	require.Equal(t, []string{
		"2:1 colour",
		"5:10 classes.standard.ttl",
		"6:13 classes.standard.jitter",
		"7:3 classes.Critical",
		"7:23 classes.Critical.timeout",
		"7:58 classes.Critical.backoff_max",
		"10:15 families.user_profile.template",
		"11:12 families.user_profile.class",
		"15:15 families.feed.strategy",
		"16:15 families.feed.hash_tag",
		"17:3 families.orphan.class",
		"19:10 families.orphan.ttl",
		"20:5 families.orphan.max_retry",
	}, got)

	lines := strings.Split(verrs.Error(), "\n")
	require.Len(t, lines, len(verrs))
	for i, want := range []string{
		`policy.yaml:2:1: colour: unknown field "colour"; known fields: version, default_class, classes, families`,
		`policy.yaml:5:10: classes.standard.ttl: invalid duration "10"; use a Go duration such as "5m" or "250ms"`,
		`policy.yaml:6:13: classes.standard.jitter: jitter 0.7 is outside [0, 0.5]`,
		`policy.yaml:7:3: classes.Critical: invalid class name "Critical"`,
		`policy.yaml:7:23: classes.Critical.timeout: timeout 0s must be whole seconds, at least 1s`,
		`policy.yaml:7:58: classes.Critical.backoff_max: backoff_max 1s is less than backoff_base 2s`,
		`policy.yaml:10:15: families.user_profile.template: invalid key template "user:{id:profile" at offset 5: unclosed '{'`,
		`policy.yaml:11:12: families.user_profile.class: unknown class "standart"; declared classes: Critical, standard`,
		`policy.yaml:15:15: families.feed.strategy: unknown strategy "versioned"; use "delete" or "version"`,
		`policy.yaml:16:15: families.feed.hash_tag: hash_tag "uid" is not a parameter of template "feed:{user_id}" (parameters: user_id)`,
		`policy.yaml:17:3: families.orphan.class: is required; declared classes: Critical, standard`,
		`policy.yaml:19:10: families.orphan.ttl: ttl -5m0s is negative; use 0 for no expiry`,
		`policy.yaml:20:5: families.orphan.max_retry: unknown field "max_retry"; known fields: template, params, class, strategy, hash_tag, ttl, jitter, mode, max_keys, owner`,
	} {
		require.True(t, strings.HasPrefix(lines[i], want), "line %d:\n got %s\nwant %s...", i, lines[i], want)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()

	const head = "version: 1\nclasses:\n  standard: {ttl: 1m}\n"
	for _, tc := range []struct {
		name, src, want string
	}{
		{"empty", "", `policy.yaml: policy is empty`},
		{"comment only", "# nothing\n", `policy.yaml: policy is empty`},
		{"syntax", "version: [1\n", `policy.yaml:1: invalid YAML: did not find expected ',' or ']'`},
		{"two documents", head + "---\nversion: 1\n", `policy.yaml:4:1: a policy file holds one YAML document`},
		{"not a mapping", "- version\n", `policy.yaml:1:1: a policy must be a mapping with version, classes and families, not a list`},
		{"no version", "classes:\n  standard: {}\n", `policy.yaml:1:1: version: is required; add "version: 1" at the top`},
		{"version 2", "version: 2\nclasses:\n  standard: {}\n", `policy.yaml:1:10: version: unsupported version 2; this invalidator reads version 1`},
		{"version string", "version: \"1\"\nclasses:\n  standard: {}\n", `policy.yaml:1:10: version: invalid integer "1"`},
		{"no classes", "version: 1\n", `policy.yaml:1:1: classes: at least one class is required`},
		{"null classes", "version: 1\nclasses:\n", `policy.yaml:2:1: classes: at least one class is required`},
		{"empty classes", "version: 1\nclasses: {}\n", `policy.yaml:2:10: classes: at least one class is required`},
		{"classes list", "version: 1\nclasses: [a]\n", `policy.yaml:2:10: classes: must be a mapping of names to settings, not a list`},
		{"duplicate class", head + "  standard: {}\n", `policy.yaml:4:3: classes.standard: duplicate key "standard" (first at line 3); remove one`},
		{"negative ttl", "version: 1\nclasses:\n  standard: {ttl: -1s}\n", `policy.yaml:3:19: classes.standard.ttl: ttl -1s is negative`},
		{"nan jitter", "version: 1\nclasses:\n  standard: {jitter: .nan}\n", `policy.yaml:3:22: classes.standard.jitter: jitter NaN is outside [0, 0.5]`},
		{"negative retry", "version: 1\nclasses:\n  standard: {max_retry: -1}\n", `policy.yaml:3:25: classes.standard.max_retry: max_retry -1 is negative`},
		{"float retry", "version: 1\nclasses:\n  standard: {max_retry: 1.5}\n", `policy.yaml:3:25: classes.standard.max_retry: invalid integer "1.5"`},
		{"sub-second timeout", "version: 1\nclasses:\n  standard: {timeout: 500ms}\n", `policy.yaml:3:23: classes.standard.timeout: timeout 500ms must be whole seconds, at least 1s: asynq counts task timeouts in whole seconds`},
		{"fractional timeout", "version: 1\nclasses:\n  standard: {timeout: 1500ms}\n", `policy.yaml:3:23: classes.standard.timeout: timeout 1.5s must be whole seconds`},
		{"zero backoff", "version: 1\nclasses:\n  standard: {backoff_base: 0s}\n", `policy.yaml:3:28: classes.standard.backoff_base: backoff_base 0s must be positive`},
		{"max below default base", "version: 1\nclasses:\n  standard: {backoff_max: 100ms}\n", `policy.yaml:3:27: classes.standard.backoff_max: backoff_max 100ms is less than backoff_base 250ms`},
		{"base above default max", "version: 1\nclasses:\n  standard: {backoff_base: 2m}\n", `policy.yaml:3:28: classes.standard.backoff_base: backoff_max 1m0s is less than backoff_base 2m0s`},
		{"bad queue", "version: 1\nclasses:\n  standard: {queue: \"\"}\n", `policy.yaml:3:21: classes.standard.queue: invalid queue name ""`},
		{"class not mapping", "version: 1\nclasses:\n  standard: 5m\n", `policy.yaml:3:13: classes.standard: must be a mapping of names to settings, not the value "5m"`},
		{"unknown default class", head + "default_class: gold\n", `policy.yaml:4:16: default_class: unknown class "gold"; declared classes: standard`},
		{"null family", head + "families:\n  user:\n", `policy.yaml:5:3: families.user: a family needs at least template and class`},
		{"no template", head + "families:\n  user: {class: standard}\n", `policy.yaml:5:3: families.user.template: is required`},
		{"empty template", head + "families:\n  user: {template: '', class: standard}\n", `policy.yaml:5:20: families.user.template: invalid key template "" at offset 0: template is empty`},
		{"template list", head + "families:\n  user: {template: [a], class: standard}\n", `policy.yaml:5:20: families.user.template: must be a key template, not a list`},
		{"bad family name", head + "families:\n  user/profile: {template: 'u:{id}', class: standard}\n", `policy.yaml:5:3: families.user/profile: invalid family name "user/profile"`},
		{"version without ttl", "version: 1\nclasses:\n  standard: {}\nfamilies:\n  feed: {template: 'feed:{id}', class: standard, strategy: version}\n",
			`policy.yaml:5:3: families.feed.ttl: a version family needs a TTL > 0`},
		{"version ttl 0", head + "families:\n  feed: {template: 'feed:{id}', class: standard, strategy: version, ttl: 0s}\n",
			`policy.yaml:5:74: families.feed.ttl: a version family needs a TTL > 0`},
		{"merge key", head + "families:\n  user: {<<: {class: standard}, template: 'u:{id}'}\n", `policy.yaml:5:10: families.user: merge keys (<<) are not supported`},
		{"null value", "version: 1\nclasses:\n  standard: {ttl: ~}\n", `policy.yaml:3:19: classes.standard.ttl: is empty; give a duration`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			verrs := parseErrors(t, tc.src)
			found := false
			for _, line := range strings.Split(verrs.Error(), "\n") {
				found = found || strings.HasPrefix(line, tc.want)
			}
			require.True(t, found, "got %s\nwant a line %s...", verrs.Error(), tc.want)
		})
	}
}

func TestExamplePolicyLoads(t *testing.T) {
	t.Parallel()

	p, err := Load(filepath.Join("..", "examples", "policy.yaml"))
	require.NoError(t, err)
	require.Equal(t, "standard", p.DefaultClass)

	// Money and permissions must be critical, with a short TTL.
	for _, name := range []string{"product_price", "permissions", "user_sessions"} {
		f, err := p.Family(name)
		require.NoError(t, err)
		require.Equal(t, "critical", f.Class, name)
		require.LessOrEqual(t, f.TTL, time.Minute, name)
		require.Positive(t, f.TTL, name)
	}
	price, err := p.Family("product_price")
	require.NoError(t, err)
	require.Less(t, price.TTL, p.Classes["critical"].TTL, "prices override the class TTL")

	feed, err := p.Family("user_feed")
	require.NoError(t, err)
	require.Equal(t, StrategyVersion, feed.Strategy)
	require.Equal(t, "user_id", feed.HashTag)

	// All of one user's keys share a cluster slot.
	var tags []string
	for _, name := range []string{"user_profile", "user_sessions"} {
		f, err := p.Family(name)
		require.NoError(t, err)
		key, err := f.Key(map[string]string{"id": "42"})
		require.NoError(t, err)
		tags = append(tags, clusterHashTag(key))
	}
	ver, err := feed.VersionKey(map[string]string{"user_id": "42"})
	require.NoError(t, err)
	tags = append(tags, clusterHashTag(ver))
	require.Equal(t, []string{"42", "42", "42"}, tags)

	// Every delete family supports its documented pattern delete.
	pattern, err := price.Pattern(map[string]string{"sku": "123"})
	require.NoError(t, err)
	require.Equal(t, "product:123:price:*", pattern)
	catalog, err := p.Family("catalog_page")
	require.NoError(t, err)
	pattern, err = catalog.Pattern(map[string]string{"category": "shoes"})
	require.NoError(t, err)
	require.Equal(t, "catalog:shoes:page:*", pattern)

	require.Equal(t, []string{"invalidator-bulk", "invalidator-critical", "invalidator-standard"}, p.Queues())
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()

	p, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.ErrorContains(t, err, "load policy: ")
	require.Nil(t, p)
}

func TestPolicyLookups(t *testing.T) {
	t.Parallel()

	p, err := Parse("shop.yaml", []byte("version: 1\nclasses:\n  standard: {}\n  critical: {queue: invalidator-standard}\nfamilies:\n  b: {template: 'b:{id}', class: standard}\n  a: {template: 'a:{id}', class: critical}\n"))
	require.NoError(t, err)

	_, err = p.Family("c")
	require.ErrorIs(t, err, ErrUnknownFamily)
	require.EqualError(t, err, `unknown family "c" in policy "shop.yaml" (declared: a, b); declare it under families: or fix the name`)
	_, err = p.Class("gold")
	require.ErrorIs(t, err, ErrUnknownClass)
	require.EqualError(t, err, `unknown class "gold" in policy "shop.yaml" (declared: critical, standard); declare it under classes: or fix the name`)

	require.Equal(t, []string{"a", "b"}, p.FamilyNames())
	require.Equal(t, []string{"invalidator-standard"}, p.Queues(), "a shared queue is listed once")
}

func TestAddFamilyAndClassOf(t *testing.T) {
	t.Parallel()

	p := Default()
	plain := mustFamily(t, "plain", "plain:{id}", FamilyOptions{})
	require.NoError(t, p.AddFamily(plain))
	require.Same(t, p.Classes["default"], p.ClassOf(plain), "a family without class gets the default class")

	err := p.AddFamily(mustFamily(t, "plain", "other:{id}", FamilyOptions{}))
	require.ErrorContains(t, err, `add family "plain" to the built-in policy: a family of that name exists`)

	err = p.AddFamily(mustFamily(t, "gold", "gold:{id}", FamilyOptions{Class: "gold"}))
	require.ErrorIs(t, err, ErrUnknownClass)

	f, err := p.Family("plain")
	require.NoError(t, err)
	require.Same(t, plain, f)
}

func TestValidationErrorFormat(t *testing.T) {
	t.Parallel()

	require.Equal(t, "policy.yaml:12:5: families.user.template: bad", ValidationError{File: "policy.yaml", Line: 12, Column: 5, Field: "families.user.template", Msg: "bad"}.Error())
	require.Equal(t, "policy.yaml:3: bad", ValidationError{File: "policy.yaml", Line: 3, Msg: "bad"}.Error())
	require.Equal(t, "policy.yaml: bad", ValidationError{File: "policy.yaml", Msg: "bad"}.Error())
	require.Equal(t, "4:2: version: bad", ValidationError{Line: 4, Column: 2, Field: "version", Msg: "bad"}.Error())
	require.Equal(t, "bad", ValidationError{Msg: "bad"}.Error())

	var err error = ValidationErrors{{File: "a", Line: 1, Msg: "x"}, {File: "a", Line: 2, Msg: "y"}}
	require.Equal(t, "a:1: x\na:2: y", err.Error())
	var verrs ValidationErrors
	require.True(t, errors.As(fmt.Errorf("wrapped: %w", err), &verrs))
	require.Len(t, verrs, 2)
}
