package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
)

// Nodes of a cluster scan in parallel and share one max_keys budget: a page
// is reserved before its UNLINK and the reservation is settled in one step
// after, so together they never delete more than max_keys. Stress: many
// "nodes" sharing one budget, one-key pages, and count what was deleted.
func TestMaxKeysReservationRace(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	w, err := New(Config{Queue: rdb, Policy: familyPolicy(t), Logger: quiet()})
	require.NoError(t, err)
	const nodes, maxKeys, trials = 32, 64, 100
	for trial := range trials {
		keys := fill(t, rdb, nodes*maxKeys, fmt.Sprintf("item:t%d:%%d", trial))
		var deleted, budget atomic.Int64
		var real atomic.Int64
		var wg sync.WaitGroup
		for n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := &nodeScan{w: w, node: rdb, nodeID: "n", deleted: &deleted, budget: &budget, maxKeys: maxKeys}
				for i := n; i < len(keys); i += nodes {
					got, err := s.deletePage(ctx, []string{keys[i]})
					if errors.Is(err, errMaxKeys) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					real.Add(got)
				}
			}()
		}
		wg.Wait()
		require.LessOrEqual(t, real.Load(), int64(maxKeys), "trial %d: the nodes together deleted %d keys past max_keys %d", trial, real.Load(), maxKeys)
		require.Equal(t, real.Load(), deleted.Load(), "trial %d: confirmed count", trial)
	}
}
