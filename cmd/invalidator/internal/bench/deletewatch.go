package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// deleteWatch records when each of n keys under a prefix is deleted, from
// Redis keyspace notifications, for the lag scenarios: the time a key is
// gone is what a reader sees, whatever path deleted it.
type deleteWatch struct {
	n       int
	subs    []*redis.PubSub // one per master of a cluster
	restore func()
	all     chan struct{} // closed once n keys are gone

	mu   sync.Mutex
	gone map[string]time.Time // guarded by mu: key -> first deletion seen
}

// watchDeletes turns keyspace notifications on and watches the deletions of
// n keys whose names start with prefix. Close restores the setting.
func watchDeletes(ctx context.Context, rdb redis.UniversalClient, prefix string, n int) (*deleteWatch, error) {
	restore, err := notifyDeletes(ctx, rdb)
	if err != nil {
		return nil, err
	}
	subs, err := psubscribeAll(ctx, rdb, "__keyevent@*__:del")
	if err != nil {
		restore()
		return nil, err
	}
	w := &deleteWatch{n: n, subs: subs, restore: restore, all: make(chan struct{}), gone: make(map[string]time.Time, n)}
	for _, sub := range subs {
		go w.read(sub, prefix)
	}
	return w, nil
}

// read records the deletions one subscription reports until all n keys are
// gone or the subscription closes.
func (w *deleteWatch) read(sub *redis.PubSub, prefix string) {
	for msg := range sub.Channel() {
		if !strings.HasPrefix(msg.Payload, prefix) {
			continue
		}
		now := time.Now()
		w.mu.Lock()
		if _, seen := w.gone[msg.Payload]; !seen {
			w.gone[msg.Payload] = now
			if len(w.gone) == w.n {
				close(w.all) // once: later deletions of the same keys are seen
			}
		}
		w.mu.Unlock()
	}
}

// count returns how many keys are gone so far.
func (w *deleteWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.gone)
}

// wait blocks until every key is gone, or fails after timeout (what names
// the event it counts from, for the error).
func (w *deleteWatch) wait(ctx context.Context, timeout time.Duration, what string) error {
	select {
	case <-w.all:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("only %d of %d keys were deleted within %s of the %s", w.count(), w.n, timeout, what)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// at returns when key was deleted (the zero time if it was not seen).
func (w *deleteWatch) at(key string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone[key]
}

// close stops watching and restores the notification setting.
func (w *deleteWatch) close() {
	for _, sub := range w.subs {
		_ = sub.Close()
	}
	w.restore()
}
