package freshness

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults for Config fields left zero.
const (
	DefaultDuration      = 10 * time.Second
	DefaultWriters       = 8
	DefaultReaders       = 32
	DefaultHotKeyReaders = 1000
	DefaultProcesses     = 2
	DefaultRows          = 64
	DefaultWriteInterval = 20 * time.Millisecond
	DefaultReadInterval  = time.Millisecond
	DefaultLoaderDelay   = 50 * time.Millisecond
	DefaultWorkerDelay   = 20 * time.Millisecond
	DefaultLagBound      = 500 * time.Millisecond
	DefaultForcedRaces   = 3
	DefaultTTL           = time.Minute
)

// Config configures one run of the checker. Zero values take the
// documented defaults.
type Config struct {
	// Queue is the Redis of the asynq queues. Required. The run uses a
	// queue of its own, "invalidator-freshness-<run>", so workers of a live
	// deployment never take its tasks.
	Queue redis.UniversalClient

	// Cache is the Redis the readers cache in. Keys live under
	// "freshness:<run>:" with a TTL of Config.TTL. Default: Queue.
	Cache redis.UniversalClient

	// Source is the source of truth. Default: an in-memory one.
	Source Source

	// Duration of the random workload; the forced races run during it and
	// the herd after it. Default: 10s.
	Duration time.Duration

	// Writers is the number of concurrent writers. Default: 8.
	Writers int

	// Readers is the number of concurrent readers of each kind. Default: 32.
	Readers int

	// HotKeyReaders is the size of the herd on one hot key, per kind.
	// Default: 1000.
	HotKeyReaders int

	// Processes is the number of cacheaside.Cache instances the cacheaside
	// readers are spread over; each stands for a process (its own
	// singleflight), so leases must work across them. Default: 2.
	Processes int

	// Rows is the number of rows of the random workload. Default: 64.
	Rows int

	// WriteInterval is each writer's pause between writes. Default: 20ms.
	WriteInterval time.Duration

	// ReadInterval is each reader's pause between reads. Default: 1ms.
	ReadInterval time.Duration

	// LoaderDelay is how long every loader sleeps after it has read the row:
	// the window in which a write can overtake it. Default: 50ms.
	LoaderDelay time.Duration

	// WorkerDelay is how long the worker sleeps before it applies each
	// task: a slow worker. Keep it below LoaderDelay, or invalidations
	// arrive after the loaders' stores and the race rarely happens.
	// Default: 20ms.
	WorkerDelay time.Duration

	// LagBound is the invalidation lag a read may be behind by before it
	// counts as stale (see the package doc). It must exceed the real lag,
	// WorkerDelay plus queueing, or correct reads count as stale; the
	// report shows the lag measured. Default: 500ms.
	LagBound time.Duration

	// ForcedRaces is the number of races driven step by step. At least one:
	// it is what proves the checker finds stale reads when there are some.
	// Default: 3.
	ForcedRaces int

	// TTL of the cache entries of both reader kinds. Default: 1m.
	TTL time.Duration

	// Logger receives the worker's logs. Default: discard.
	Logger *slog.Logger

	// Progress receives a line per phase; nil for none.
	Progress io.Writer
}

// Validate reports the first configuration problem, naming the field.
func (c Config) Validate() error {
	if c.Queue == nil {
		return errors.New("freshness: Config.Queue is nil (pass the queue Redis)")
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"Writers", c.Writers}, {"Readers", c.Readers}, {"HotKeyReaders", c.HotKeyReaders},
		{"Processes", c.Processes}, {"Rows", c.Rows}, {"ForcedRaces", c.ForcedRaces},
	} {
		if f.v < 0 {
			return fmt.Errorf("freshness: %s %d is negative", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"Duration", c.Duration}, {"WriteInterval", c.WriteInterval}, {"ReadInterval", c.ReadInterval},
		{"LoaderDelay", c.LoaderDelay}, {"WorkerDelay", c.WorkerDelay}, {"LagBound", c.LagBound}, {"TTL", c.TTL},
	} {
		if f.d < 0 {
			return fmt.Errorf("freshness: %s %s is negative", f.name, f.d)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Cache == nil {
		c.Cache = c.Queue
	}
	if c.Source == nil {
		c.Source = NewMemory()
	}
	c.Writers = cmp.Or(c.Writers, DefaultWriters)
	c.Readers = cmp.Or(c.Readers, DefaultReaders)
	c.HotKeyReaders = cmp.Or(c.HotKeyReaders, DefaultHotKeyReaders)
	c.Processes = cmp.Or(c.Processes, DefaultProcesses)
	c.Rows = cmp.Or(c.Rows, DefaultRows)
	c.ForcedRaces = cmp.Or(c.ForcedRaces, DefaultForcedRaces)
	c.Duration = cmp.Or(c.Duration, DefaultDuration)
	c.WriteInterval = cmp.Or(c.WriteInterval, DefaultWriteInterval)
	c.ReadInterval = cmp.Or(c.ReadInterval, DefaultReadInterval)
	c.LoaderDelay = cmp.Or(c.LoaderDelay, DefaultLoaderDelay)
	c.WorkerDelay = cmp.Or(c.WorkerDelay, DefaultWorkerDelay)
	c.LagBound = cmp.Or(c.LagBound, DefaultLagBound)
	c.TTL = cmp.Or(c.TTL, DefaultTTL)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
