package enqueue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Stress of the coalescer with the production lone lane: random
// cancellations, failing and panicking sends (lone ones: a batch's send runs
// on a goroutine of the coalescer, where a panic is the process's end),
// many batch keys, Close midway. Every call that returns no error has its
// keys in the task it was told; nothing stays in flight or open; Close
// returns.
func TestCoalesceStress(t *testing.T) {
	for round := range 6 {
		t.Run(fmt.Sprint(round), func(t *testing.T) { coalesceStress(t, round%2 == 1) })
	}
}

func coalesceStress(t *testing.T, closeMidway bool) {
	b := coalesceSetup(t, CoalesceConfig{Window: time.Millisecond, MaxKeys: 9}, true)
	co := b.client.co
	co.maxLone = coalesceMaxLone
	var (
		mu     sync.Mutex
		sent   = map[string][]string{} // id -> keys
		nextID atomic.Int64
		panics atomic.Int64
		calm   atomic.Bool // no failures
	)
	co.send = func(ctx context.Context, bt *batch) (string, error) {
		// every key of one batch has the batch's overrides
		want := fmt.Sprintf("r%d:", bt.key.maxRetry)
		if !bt.key.hasMaxRetry {
			want = "r-:"
		}
		for _, k := range bt.keys {
			if !strings.HasPrefix(k, want) {
				t.Errorf("key %q in a batch of %s", k, want)
			}
		}
		time.Sleep(time.Duration(rand.IntN(400)) * time.Microsecond)
		n := rand.IntN(100)
		if calm.Load() {
			n = 100
		}
		switch {
		case n < 3 && bt.lone:
			panics.Add(1)
			panic("stress: send blew up")
		case n < 6:
			return "", errors.New("stress: send failed")
		}
		if err := ctx.Err(); err != nil && bt.lone {
			return "", err
		}
		id := fmt.Sprint(nextID.Add(1))
		mu.Lock()
		sent[id] = append([]string(nil), bt.keys...)
		mu.Unlock()
		return id, nil
	}
	clients := []*Client{b.client}
	for r := range 4 {
		clients = append(clients, b.client.With(MaxRetry(r)))
	}
	prefix := func(i int) string {
		if i == 0 {
			return "r-:"
		}
		return fmt.Sprintf("r%d:", i-1)
	}
	type okCall struct {
		keys []string
		id   string
	}
	var (
		oks     []okCall
		okMu    sync.Mutex
		slowest atomic.Int64
		closed  atomic.Bool
	)
	const producers, calls = 12, 150
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range calls {
				ci := rand.IntN(len(clients))
				keys := make([]string, 1+rand.IntN(4))
				for j := range keys {
					keys[j] = fmt.Sprintf("%sp%d:c%d:k%d", prefix(ci), p, i, j)
				}
				ctx := context.Background()
				var cancel context.CancelFunc = func() {}
				if rand.IntN(5) == 0 {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(1500))*time.Microsecond)
				}
				start := time.Now()
				var ids []string
				var err error
				func() {
					defer func() {
						if r := recover(); r != nil && r != "stress: send blew up" {
							panic(r)
						} else if r != nil {
							err = errors.New("panicked")
						}
					}()
					ids, err = clients[ci].DeleteKeys(ctx, keys...)
				}()
				cancel()
				d := time.Since(start)
				for {
					s := slowest.Load()
					if int64(d) <= s || slowest.CompareAndSwap(s, int64(d)) {
						break
					}
				}
				if err == nil {
					okMu.Lock()
					oks = append(oks, okCall{keys, ids[0]})
					okMu.Unlock()
				} else if closed.Load() && errors.Is(err, ErrClosed) {
					return
				}
				if rand.IntN(10) == 0 {
					time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
				}
			}
		})
	}
	if closeMidway {
		time.Sleep(time.Duration(20+rand.IntN(60)) * time.Millisecond)
		closed.Store(true)
		done := make(chan struct{})
		go func() { _ = b.client.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(waitFor):
			t.Fatal("Close did not return")
		}
	}
	wg.Wait()
	if !closeMidway {
		// quiescent: open batches end with their windows
		require.Eventually(t, func() bool {
			co.mu.Lock()
			defer co.mu.Unlock()
			return len(co.batches) == 0 && len(co.inFlight) == 0
		}, waitFor, time.Millisecond, "batches or flights left: %v", func() any { co.mu.Lock(); defer co.mu.Unlock(); return co.inFlight }())
		calm.Store(true)
		// a leak would make the next call wait out a window; check none is opened
		for i := range 5 {
			_, err := b.client.DeleteKeys(context.Background(), fmt.Sprintf("r-:after%d", i))
			require.NoError(t, err)
			co.mu.Lock()
			require.Empty(t, co.batches, "a lone call after quiescence opened a batch")
			co.mu.Unlock()
		}
		_ = b.client.Close()
	}
	co.mu.Lock()
	require.Empty(t, co.batches)
	require.Empty(t, co.inFlight)
	co.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	for _, c := range oks {
		require.Subset(t, sent[c.id], c.keys, "call told id %s but its keys are not in it", c.id)
	}
	t.Logf("ok calls %d, tasks %d, panics %d, slowest call %v", len(oks), len(sent), panics.Load(), time.Duration(slowest.Load()))
}
