package audit

import (
	"context"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/keyspec"
)

// scanned is what sampling a family found.
type scanned struct {
	keys []string
	// visited is about how many keys SCAN looked at: ScanCount a page.
	visited int
	// spent reports the scan budget ran out before the sample was full.
	spent bool
	// dbsize is the keys in the cache, over every master.
	dbsize int64
}

// sample returns up to Config.Sample distinct keys of the family, from
// every master, each master's share of the sample and of the scan budget
// proportional to its key count. A delete family's keys are its template's;
// a version family's are its version keys, one per entity.
func (a *Auditor) sample(ctx context.Context, fam *keyspec.Family) (scanned, error) {
	var (
		pattern string
		match   func(string) bool
	)
	if fam.Strategy == keyspec.StrategyVersion {
		p, err := fam.VersionKeyPattern()
		if err != nil {
			return scanned{}, err
		}
		pattern = p
		match = func(k string) bool { _, err := fam.ParseVersionKey(k); return err == nil }
	} else {
		m, err := fam.Matcher(nil)
		if err != nil {
			return scanned{}, err
		}
		pattern, match = m.Pattern(), m.Match
	}
	nodes, err := a.masters(ctx)
	if err != nil {
		return scanned{}, err
	}
	sizes := make([]int64, len(nodes))
	var out scanned
	for i, n := range nodes {
		if sizes[i], err = n.DBSize(ctx).Result(); err != nil {
			return scanned{}, fmt.Errorf("dbsize: %w", err)
		}
		out.dbsize += sizes[i]
	}
	for i, n := range nodes {
		if sizes[i] == 0 {
			continue
		}
		// Rounded up, so a small master still gets its share.
		quota := int((int64(a.cfg.Sample)*sizes[i] + out.dbsize - 1) / out.dbsize)
		budget := int((int64(a.cfg.ScanBudget)*sizes[i] + out.dbsize - 1) / out.dbsize)
		want := min(quota, a.cfg.Sample-len(out.keys))
		ks, visited, err := a.sampleNode(ctx, n, sizes[i], pattern, match, want, budget)
		if err != nil {
			return scanned{}, err
		}
		out.keys = append(out.keys, ks...)
		out.visited += visited
		if len(ks) < want && visited >= budget {
			out.spent = true
		}
	}
	return out, nil
}

// masters returns the clients to SCAN: every master of a cluster, or the
// one server.
func (a *Auditor) masters(ctx context.Context) ([]redis.Cmdable, error) {
	cc, ok := a.cache.(*redis.ClusterClient)
	if !ok {
		return []redis.Cmdable{a.cache}, nil
	}
	var (
		mu  sync.Mutex // guards out
		out []redis.Cmdable
	)
	err := cc.ForEachMaster(ctx, func(_ context.Context, n *redis.Client) error {
		mu.Lock()
		out = append(out, n)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list cluster masters: %w", err)
	}
	return out, nil
}

// sampleNode SCANs one server from a random cursor, so each audit looks at
// another part of the keyspace, and keeps the keys match accepts (the
// whole template, declared parameters) until it has want of them. It goes
// on from cursor 0 after the end, so a family smaller than want is seen
// whole; it stops after two full passes at most, or once it has visited
// budget keys, so a family with few keys in a big cache costs a bounded
// scan, not the whole cache. It returns the keys and about how many it
// visited.
func (a *Auditor) sampleNode(ctx context.Context, n redis.Cmdable, size int64, pattern string, match func(string) bool, want, budget int) ([]string, int, error) {
	if want <= 0 {
		return nil, 0, nil
	}
	// SCAN cursors index the hash table (in reversed bits); a random one
	// below the table size starts at a random bucket.
	tableSize := uint64(1) << bits.Len64(uint64(size))
	start := rand.Uint64N(tableSize)
	cursor := start
	seen := make(map[string]bool)
	var out []string
	passes := 0
	visited := 0
	for visited < budget {
		if err := a.limit.WaitN(ctx, min(a.cfg.ScanCount, a.limit.Burst())); err != nil {
			return nil, visited, err
		}
		page, next, err := n.Scan(ctx, cursor, pattern, int64(a.cfg.ScanCount)).Result()
		if err != nil {
			return nil, visited, fmt.Errorf("scan %q: %w", pattern, err)
		}
		visited += a.cfg.ScanCount
		for _, k := range page {
			if !seen[k] && match(k) {
				seen[k] = true
				out = append(out, k)
				if len(out) == want {
					return out, visited, nil
				}
			}
		}
		cursor = next
		if cursor == 0 {
			passes++
			if start == 0 || passes == 2 {
				// The last pages held fewer keys than COUNT.
				visited = min(visited, passes*int(size))
				break
			}
		}
	}
	return out, visited, nil
}
