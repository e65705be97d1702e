package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/internal/redisconn"
	"github.com/invalidator/invalidator/keyspec"
)

// familyCount is the dry run of a family pattern delete: what SCAN MATCH
// returns, and what of it the worker would delete.
type familyCount struct {
	Family  string
	Pattern string
	// Scanned counts the keys the pattern matches.
	Scanned int64
	// Matched counts the keys of the family among them: what the worker
	// deletes. It is Scanned unless the family declares parameter values.
	Matched int64
	// Filtered is true when the family's declarations filter the pattern's
	// matches (Matched may be less than Scanned).
	Filtered bool
	// Shared counts the keys among Matched that also fit the template of
	// another family, and Others how many fit each such family: keys of
	// other families, most likely, that the delete takes with it.
	Shared int64
	Others map[string]int64
	// Undeclared lists the family's parameters without a declaration.
	Undeclared []string
	// MaxKeys is the family's cap on one delete (0: none): a count above
	// it means the real run stops there and is dead-lettered.
	MaxKeys int
}

// countFamilyDelete counts, on every master, the keys a pattern delete of
// fam with params would remove, as the worker would: it walks the whole
// keyspace with the same pattern and keeps the keys the family's matcher
// matches. m is fam.Matcher(params).
func countFamilyDelete(ctx context.Context, c redis.UniversalClient, p *keyspec.Policy, fam *keyspec.Family,
	params map[string]string, m *keyspec.Matcher,
) (*familyCount, error) {
	fc := &familyCount{Family: fam.Name, Pattern: m.Pattern(), Filtered: m.Filters(), Others: map[string]int64{}, MaxKeys: fam.MaxKeys}
	for _, name := range fam.Template.Params() {
		if _, declared := fam.Params[name]; !declared {
			fc.Undeclared = append(fc.Undeclared, name)
		}
	}
	// Only the families whose keys the delete can reach at all are worth
	// a match per key.
	caps, err := p.Captures(fam, params)
	if err != nil {
		return nil, err
	}
	others := make([]*keyspec.Matcher, len(caps))
	for i, c := range caps {
		others[i] = p.Families[c.Family].KeysMatcher()
	}
	var mu sync.Mutex // guards fc's counts
	count := func(keys []string) {
		var matched, shared int64
		hits := make([]int64, len(caps))
		for _, k := range keys {
			if fc.Filtered && !m.Match(k) {
				continue
			}
			matched++
			fits := false
			for i, o := range others {
				if o.Match(k) {
					hits[i]++
					fits = true
				}
			}
			if fits {
				shared++
			}
		}
		mu.Lock()
		defer mu.Unlock()
		fc.Scanned += int64(len(keys))
		fc.Matched += matched
		fc.Shared += shared
		for i, n := range hits {
			if n > 0 {
				fc.Others[caps[i].Family] += n
			}
		}
	}
	scan := func(ctx context.Context, node redis.UniversalClient) error {
		var cur uint64
		for {
			keys, next, err := node.Scan(ctx, cur, fc.Pattern, 1000).Result()
			if err != nil {
				return fmt.Errorf("count keys matching %q: %w", fc.Pattern, err)
			}
			count(keys)
			if next == 0 {
				return nil
			}
			cur = next
		}
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return scan(ctx, node) })
	} else {
		err = scan(ctx, c)
	}
	return fc, err
}

// describe says what the delete would remove, for the dry run and the
// confirmation: where names the Redis counted in.
//
//	3 keys match product:* (family product) in the cache Redis; 2 of them also fit the
//	templates of families product_details (1) and product_price (1), and would be deleted
//	with it: declare params.id of family product in the policy to keep the delete to its family
func (fc *familyCount) describe(where string) string {
	var b strings.Builder
	if fc.Filtered {
		fmt.Fprintf(&b, "%d %s of family %s %s %s in %s", fc.Matched, keysWord(fc.Matched), fc.Family,
			plural(int(fc.Matched), "matches", "match"), fc.Pattern, where)
		if kept := fc.Scanned - fc.Matched; kept > 0 {
			fmt.Fprintf(&b, " (%d scanned; %d outside its declared params will be kept)", fc.Scanned, kept)
		}
	} else {
		fmt.Fprintf(&b, "%d %s match %s (family %s) in %s", fc.Scanned, keysWord(fc.Scanned), fc.Pattern, fc.Family, where)
	}
	if fc.Shared > 0 {
		var names []string
		for _, name := range slices.Sorted(maps.Keys(fc.Others)) {
			names = append(names, fmt.Sprintf("%s (%d)", name, fc.Others[name]))
		}
		fmt.Fprintf(&b, "; %d of them also fit the %s of %s %s, and would be deleted with it", fc.Shared,
			plural(len(names), "template", "templates"), plural(len(names), "family", "families"), joinAnd(names))
		if len(fc.Undeclared) > 0 {
			ps := make([]string, len(fc.Undeclared))
			for i, p := range fc.Undeclared {
				ps[i] = "params." + p
			}
			fmt.Fprintf(&b, ": declare %s of family %s in the policy to keep the delete to its family", joinAnd(ps), fc.Family)
		}
	}
	b.WriteString("\n")
	if fc.MaxKeys > 0 && fc.Matched > int64(fc.MaxKeys) {
		// A dry run that only counted would hide that the real run stops.
		fmt.Fprintf(&b, "max_keys %d of family %s would stop this delete: the worker stops before it passes %d keys and dead-letters the task, "+
			"keeping its cursor. If %d keys is expected, finish it with 'invalidator dead retry --force ID'; otherwise check the parameters, or raise max_keys in the policy\n",
			fc.MaxKeys, fc.Family, fc.MaxKeys, fc.Matched)
	}
	return b.String()
}

func keysWord(n int64) string { return plural(int(n), "key", "keys") }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// joinAnd joins items as "a", "a and b" or "a, b and c".
func joinAnd(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

// cacheRedis connects to the cache Redis: --cache-redis, else
// INVALIDATOR_CACHE_REDIS_URL, else the queue Redis, used as a cache.
func (a *app) cacheRedis(ctx context.Context, flag string) (redis.UniversalClient, error) {
	if url := a.env(flag, envCacheRedisURL, ""); url != "" {
		return a.connect(ctx, "cache Redis", url)
	}
	return a.connectAs(ctx, roleQueue, redisconn.UseCache, a.env(a.redisURL, envRedisURL, defaultRedisURL))
}
