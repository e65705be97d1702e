package enqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/internal/redisconn"
	"github.com/invalidator/invalidator/internal/wake"
	"github.com/invalidator/invalidator/keyspec"
)

var (
	// ErrUnknownQueue is returned for a Queue override that names no class's
	// queue: no worker would ever take the task.
	ErrUnknownQueue = errors.New("unknown queue")
	// ErrClosed is returned by DeleteKeys on a coalescing Client after Close:
	// its batches have been flushed and no new one would be.
	ErrClosed = errors.New("enqueue client is closed")
	// ErrInvalidOption is returned for a MaxRetry or Timeout override that
	// asynq would quietly change: a negative retry count, which it makes 0,
	// and a negative timeout or one that is not a whole number of seconds,
	// which it truncates to seconds (under 1s: no timeout, so its 30 min
	// default).
	ErrInvalidOption = errors.New("invalid option")
)

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	// Policy supplies families and their classes. Default: keyspec.Default(),
	// which knows no families, so only DeleteKeys works without a policy.
	Policy *keyspec.Policy

	// Target is the cache target stamped on every task; "" is the worker's
	// default cache. Default: "".
	Target string

	// Now stamps tasks with their enqueue time. Default: time.Now.
	Now func() time.Time

	// Coalesce tunes how concurrent DeleteKeys calls merge into shared
	// tasks (group commit; see CoalesceConfig). A lone call never waits:
	// calls merge only while an enqueue of the same overrides is in
	// flight. Default: nil, which is coalescing with DefaultCoalesceWindow
	// and up to tasks.MaxKeysPerTask keys a task.
	Coalesce *CoalesceConfig

	// NoCoalesce turns coalescing off: every DeleteKeys call makes its own
	// tasks and gets their IDs alone. It costs the queue a task per call,
	// which caps a worker process at about 17k calls/s. Default: false.
	NoCoalesce bool

	// InlineDelete, when set, is the cache Redis that Target names (the
	// worker's Cache for "", else its Targets[Target]; the Client cannot
	// check this, so pass the right one). DeleteKeys and Publish then UNLINK
	// the keys they invalidate there at once, one UNLINK per hash slot,
	// pipelined, before the task is enqueued; the task is enqueued all the
	// same and remains the guarantee. A failed inline delete never fails
	// the call: it is logged at debug and counted (InlineMetrics). Publish
	// deletes inline only the key deletes of enforce-mode families; pattern
	// deletes and version bumps stay with the worker. DeleteFamily and
	// BumpVersion do nothing inline. Default: nil, no inline delete.
	InlineDelete redis.UniversalClient

	// InlineTimeout bounds one inline delete, so a hung cache delays the
	// enqueue that follows by at most this. Default: DefaultInlineTimeout.
	InlineTimeout time.Duration

	// InlineMetrics counts inline deletes and their failures; see
	// NewInlineMetrics. Default: nil, nothing counted.
	InlineMetrics *InlineMetrics

	// Logger receives the debug records of failed inline deletes and
	// wake-up pushes. Default: none (a discarding logger).
	Logger *slog.Logger

	// NoWake stops the Client from waking idle workers. By default, after
	// each enqueue it pushes a wake-up token for the task's queue, from a
	// goroutine of its own so the call does not wait for it, and an idle
	// worker starts the task at once instead of at its next safety poll
	// (worker.Config.SafetyPoll). Default: false.
	NoWake bool
}

func (cfg *Config) validate() error {
	if cfg.InlineTimeout < 0 {
		return fmt.Errorf("enqueue: config: InlineTimeout %v is negative; leave it 0 for %v", cfg.InlineTimeout, DefaultInlineTimeout)
	}
	if cfg.Coalesce != nil && cfg.NoCoalesce {
		return errors.New("enqueue: config: Coalesce and NoCoalesce are both set; set one")
	}
	if cfg.Coalesce != nil {
		if err := cfg.Coalesce.validate(); err != nil {
			return fmt.Errorf("enqueue: config: %w", err)
		}
	}
	return nil
}

// Client enqueues invalidation tasks. It is safe for concurrent use.
//
// It never sets asynq's Unique or TaskID options to coalesce tasks: while a
// task for key K is running, a matching new task would be refused as a
// duplicate, yet the running task may already have deleted K before the new
// write committed, so that write's invalidation would be silently lost.
// Duplicates are harmless instead: invalidations only remove or advance.
type Client struct {
	aq    *asynq.Client
	owned redis.UniversalClient // closed by Close; nil when the caller owns the connection
	b     *Builder              // validates and builds every task
	co    *coalescer            // nil with Config.NoCoalesce; shared with With
	in    *inline               // nil unless Config.InlineDelete is set
	wake  *wake.Pusher          // nil with Config.NoWake; shared with With
}

// New returns a Client that enqueues on the queue Redis rdb. The caller
// keeps ownership of rdb.
func New(rdb redis.UniversalClient, cfg Config) (*Client, error) {
	if rdb == nil {
		return nil, errors.New("enqueue: nil redis client (pass the queue Redis)")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return newClient(rdb, nil, cfg), nil
}

// NewFromURL connects to the queue Redis at url (see the README for the URL
// forms) and returns a Client that owns that connection.
func NewFromURL(url string, cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rdb, err := redisconn.Open(url)
	if err != nil {
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	return newClient(rdb, rdb, cfg), nil
}

func newClient(rdb, owned redis.UniversalClient, cfg Config) *Client {
	c := &Client{
		aq:    asynq.NewClientFromRedisClient(rdb),
		owned: owned,
		b:     NewBuilder(cfg),
		in:    newInline(cfg),
	}
	if !cfg.NoWake {
		c.wake = wake.NewPusher(rdb, cfg.Logger)
	}
	if !cfg.NoCoalesce {
		cc := CoalesceConfig{Window: DefaultCoalesceWindow}
		if cfg.Coalesce != nil {
			cc = *cfg.Coalesce
		}
		c.co = newCoalescer(cc)
	}
	return c
}

// Close waits for the wake-up pushes of earlier calls, and releases the
// connection if the Client opened it (NewFromURL).
// Clients derived with With share it, so close only the original.
//
// A coalescing Client first enqueues its pending batches and waits for them,
// so every DeleteKeys call in flight gets its result; later DeleteKeys calls
// fail with ErrClosed.
func (c *Client) Close() error {
	var err error
	if c.co != nil {
		err = c.co.close()
	}
	c.wake.Wait()
	if c.owned != nil {
		err = errors.Join(err, c.owned.Close())
	}
	return err
}

// With returns a Client that applies opts to every task it enqueues, over
// the class defaults. It shares the connection of c.
//
//	ids, err := c.With(enqueue.Queue("invalidator-critical")).DeleteKeys(ctx, "price:42")
func (c *Client) With(opts ...Option) *Client {
	d := *c
	d.b = c.b.With(opts...)
	return &d
}

// Builder returns the Builder that validates and builds c's tasks, with c's
// policy, target and overrides.
func (c *Client) Builder() *Builder { return c.b }

// DeleteKeys enqueues the deletion of keys from the cache. Keys are bytes:
// any byte string round-trips exactly. A call with more keys than one task
// holds is split into several tasks; it returns every task ID. On error, the
// IDs of the tasks already enqueued are returned with it; calling again with
// all the keys is safe, because deletes are idempotent.
//
// Unless Config.NoCoalesce is set, a call of up to CoalesceConfig.MaxKeys
// keys shares one task with the concurrent calls of the same overrides (see
// CoalesceConfig) and returns that task's ID.
func (c *Client) DeleteKeys(ctx context.Context, keys ...string) ([]string, error) {
	chunks, class, err := c.b.keysPlan(keys)
	if err != nil {
		return nil, fmt.Errorf("enqueue %w", err) // "enqueue delete keys: ..."
	}
	// Inline first, per call even when coalescing: the keys are gone one
	// cache round trip after the call starts, whatever the queue does.
	c.in.unlink(ctx, keys)
	if c.co != nil {
		if size, ok := c.co.fits(keys); ok && len(chunks) == 1 {
			return c.co.deleteKeys(ctx, c, class, keys, size)
		}
		if c.co.isClosed() {
			return nil, fmt.Errorf("enqueue delete keys: %w", ErrClosed)
		}
	}
	ids := make([]string, 0, len(chunks))
	now := c.b.now()
	for i, chunk := range chunks {
		m, err := c.b.keysMessage(chunk, now, class)
		if err == nil {
			var id string
			if id, err = c.Enqueue(ctx, m); err == nil {
				ids = append(ids, id)
				continue
			}
		}
		return ids, fmt.Errorf("enqueue delete keys (task %d of %d): %w", i+1, len(chunks), err)
	}
	return ids, nil
}

// DeleteFamily enqueues a pattern delete of one family: every key of the
// family whose parameters match params; parameters left out match any value.
// The pattern is checked here, so an unknown family, an unknown parameter or
// a delete that would be too wide fails at the write site, not in the worker.
func (c *Client) DeleteFamily(ctx context.Context, family string, params map[string]string) (string, error) {
	m, err := c.b.DeleteFamily(family, params)
	if err != nil {
		return "", fmt.Errorf("enqueue %w", err) // "enqueue delete family: ..."
	}
	id, err := c.Enqueue(ctx, m)
	if err != nil {
		return "", fmt.Errorf("enqueue delete family %q: %w", family, err)
	}
	return id, nil
}

// BumpVersion enqueues a version bump of one instance of a version family.
// Every parameter of the family's template must be given.
func (c *Client) BumpVersion(ctx context.Context, family string, params map[string]string) (string, error) {
	m, err := c.b.BumpVersion(family, params)
	if err != nil {
		return "", fmt.Errorf("enqueue %w", err)
	}
	id, err := c.Enqueue(ctx, m)
	if err != nil {
		return "", fmt.Errorf("enqueue bump version %q: %w", family, err)
	}
	return id, nil
}

// Publish enqueues one event task: the policy's events section decides
// which keys, patterns and versions it invalidates, and the worker resolves
// it against its own copy of the policy. The event and its attributes are
// checked here, so an unknown event (keyspec.ErrUnknownEvent) or a missing,
// unknown or empty attribute fails at the write site instead of becoming a
// silent no-op. So does a publication whose values every family of the
// event refuses (keyspec.ErrInvalidParam, keyspec.ErrUnsafeHashTag): it
// would invalidate nothing. One that only some families refuse is queued:
// the worker skips those invalidations, which cannot name a cached key
// (keyspec.Refusal), logs and counts them, and applies the rest. The task
// takes the event's class (see keyspec.Policy.ClassOfEvent).
//
//	// after the UPDATE has committed:
//	_, err := c.Publish(ctx, "product.updated", map[string]string{"id": "7"})
func (c *Client) Publish(ctx context.Context, event string, attrs map[string]string) (string, error) {
	m, actions, err := c.b.publish(event, attrs)
	if err != nil {
		return "", fmt.Errorf("enqueue %w", err)
	}
	if c.in != nil {
		c.in.unlink(ctx, inlineKeys(actions))
	}
	id, err := c.Enqueue(ctx, m)
	if err != nil {
		return "", fmt.Errorf("enqueue publish %q: %w", event, err)
	}
	return id, nil
}

// Enqueue puts one Message, built by a Builder, on its queue and returns
// the task's ID. It is the single path from a Message to asynq, for the
// calls above and for the outbox relay.
func (c *Client) Enqueue(ctx context.Context, m Message) (string, error) {
	if m.ID != "" {
		// asynq refuses an ID that is still queued: a second invalidation
		// under it would be dropped while the first waits.
		return "", fmt.Errorf("enqueue %s: Message.ID %q is set; a producer's task takes a fresh ID (leave ID empty; only a dead-letter requeue names one)", m.Kind, m.ID)
	}
	t, opts := m.Asynq()
	info, err := c.aq.EnqueueContext(ctx, t, opts...)
	if err != nil {
		return "", err
	}
	c.wake.Wake(info.Queue, 1)
	return info.ID, nil
}
