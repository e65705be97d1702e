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

// sample returns up to Config.Sample distinct keys of the family, from
// every master, each master's share proportional to its key count.
func (a *Auditor) sample(ctx context.Context, fam *keyspec.Family) ([]string, error) {
	pattern, err := fam.Pattern(nil)
	if err != nil {
		return nil, err
	}
	m, err := fam.Matcher(nil)
	if err != nil {
		return nil, err
	}
	nodes, err := a.masters(ctx)
	if err != nil {
		return nil, err
	}
	sizes := make([]int64, len(nodes))
	var total int64
	for i, n := range nodes {
		if sizes[i], err = n.DBSize(ctx).Result(); err != nil {
			return nil, fmt.Errorf("dbsize: %w", err)
		}
		total += sizes[i]
	}
	var keys []string
	for i, n := range nodes {
		if sizes[i] == 0 {
			continue
		}
		// Rounded up, so a small master still gets its share.
		quota := int((int64(a.cfg.Sample)*sizes[i] + total - 1) / total)
		ks, err := a.sampleNode(ctx, n, sizes[i], pattern, m, min(quota, a.cfg.Sample-len(keys)))
		if err != nil {
			return nil, err
		}
		keys = append(keys, ks...)
	}
	return keys, nil
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
// another part of the keyspace, and keeps the keys the matcher accepts
// (the whole template, declared parameters) until it has want of them.
// It goes on from cursor 0 after the end, so a family smaller than want is
// seen whole; it stops after two full passes at most, or MaxScan keys.
func (a *Auditor) sampleNode(ctx context.Context, n redis.Cmdable, size int64, pattern string, m *keyspec.Matcher, want int) ([]string, error) {
	if want <= 0 {
		return nil, nil
	}
	// SCAN cursors index the hash table (in reversed bits); a random one
	// below the table size starts at a random bucket.
	tableSize := uint64(1) << bits.Len64(uint64(size))
	start := rand.Uint64N(tableSize)
	cursor := start
	seen := make(map[string]bool)
	var out []string
	passes := 0
	for visited := 0; visited < a.cfg.MaxScan; visited += a.cfg.ScanCount {
		if err := a.limit.WaitN(ctx, min(a.cfg.ScanCount, a.limit.Burst())); err != nil {
			return nil, err
		}
		page, next, err := n.Scan(ctx, cursor, pattern, int64(a.cfg.ScanCount)).Result()
		if err != nil {
			return nil, fmt.Errorf("scan %q: %w", pattern, err)
		}
		for _, k := range page {
			if !seen[k] && m.Match(k) {
				seen[k] = true
				out = append(out, k)
				if len(out) == want {
					return out, nil
				}
			}
		}
		cursor = next
		if cursor == 0 {
			passes++
			if start == 0 || passes == 2 {
				break
			}
		}
	}
	return out, nil
}
