package enqueue

import (
	"context"
	"fmt"
	"sync"
)

// enqueueAllConcurrency bounds the enqueues of one EnqueueAll in flight at
// once. Tasks that cannot merge (events, family deletes) are one round trip
// each; overlapping them keeps a batch of 1000 events from costing 1000
// sequential round trips. The go-redis pool serves them.
const enqueueAllConcurrency = 16

// EnqueueAll enqueues msgs, several at once, and returns the first error;
// the others stop early, and some of msgs may be enqueued all the same. A
// caller that must not lose them (the outbox relay, invalidator cdc) keeps
// its source until EnqueueAll returns nil and sends them all again after an
// error: invalidations commute and repeat harmlessly, so order and
// duplicates do not matter.
func (c *Client) EnqueueAll(ctx context.Context, msgs []Message) error {
	if len(msgs) == 1 {
		if _, err := c.Enqueue(ctx, msgs[0]); err != nil {
			return fmt.Errorf("enqueue %s on %s: %w", msgs[0].Kind, msgs[0].Queue, err)
		}
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan Message)
	var wg sync.WaitGroup
	for range min(enqueueAllConcurrency, len(msgs)) {
		wg.Go(func() {
			for m := range next {
				if _, err := c.Enqueue(ctx, m); err != nil {
					cancel(fmt.Errorf("enqueue %s on %s: %w", m.Kind, m.Queue, err))
				}
			}
		})
	}
feed:
	for _, m := range msgs {
		select {
		case next <- m:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("%d tasks: %w", len(msgs), err)
	}
	return nil
}
