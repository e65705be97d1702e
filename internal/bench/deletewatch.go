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
	sub     *redis.PubSub
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
	sub := rdb.PSubscribe(ctx, "__keyevent@*__:del")
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		_ = sub.Close()
		restore()
		return nil, fmt.Errorf("subscribe to keyspace notifications: %w", err)
	}
	w := &deleteWatch{n: n, sub: sub, restore: restore, all: make(chan struct{}), gone: make(map[string]time.Time, n)}
	go func() {
		for msg := range sub.Channel() {
			if !strings.HasPrefix(msg.Payload, prefix) {
				continue
			}
			now := time.Now()
			w.mu.Lock()
			if _, seen := w.gone[msg.Payload]; !seen {
				w.gone[msg.Payload] = now
			}
			complete := len(w.gone) == n
			w.mu.Unlock()
			if complete {
				close(w.all)
				return
			}
		}
	}()
	return w, nil
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
	_ = w.sub.Close()
	w.restore()
}
