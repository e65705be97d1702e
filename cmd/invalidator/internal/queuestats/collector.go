package queuestats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/worker"
)

// Defaults for Config fields left zero.
const (
	// DefaultTimeout bounds one refresh, and so one scrape: well under
	// Prometheus's default 10s scrape timeout.
	DefaultTimeout = 5 * time.Second
	// DefaultMinInterval is how long a refresh is reused. Prometheus HA
	// pairs and ad-hoc curls then cost one refresh per interval, not one each.
	DefaultMinInterval = 5 * time.Second
)

// Task states, the values of the "state" label.
const (
	StatePending     = "pending"
	StateActive      = "active"
	StateScheduled   = "scheduled"
	StateRetry       = "retry"
	StateArchived    = "archived"
	StateCompleted   = "completed"
	StateAggregating = "aggregating"
)

var errNoClient = errors.New("queuestats: Config.Client is nil (pass the redis.UniversalClient of the queue Redis)")

// Config says which queues to export and how often to read them.
type Config struct {
	// Client is the queue Redis. Required.
	Client redis.UniversalClient
	// Queues to export. Default: every queue asynq knows on Client, read at
	// each refresh.
	Queues []string
	// Timeout bounds one refresh; a scrape that waits longer gets
	// invalidator_queue_stats_up 0. Default: DefaultTimeout.
	Timeout time.Duration
	// MinInterval is how long a refresh serves later scrapes. A negative
	// value refreshes on every scrape. Default: DefaultMinInterval.
	MinInterval time.Duration
	// Logger receives failed refreshes. Default: slog.Default().
	Logger *slog.Logger
}

// Collector is a prometheus.Collector of queue stats. It is safe for
// concurrent use.
type Collector struct {
	cfg  Config
	insp *asynq.Inspector
	now  func() time.Time

	mu      sync.Mutex    // guards snap and running
	snap    *snapshot     // the last finished refresh; nil before the first
	running chan struct{} // closed when the refresh in flight ends; nil if none
}

// snapshot is the outcome of one refresh.
type snapshot struct {
	at       time.Time
	queues   []*asynq.QueueInfo // sorted by name
	recorded []int64            // dead-letter record size of each queue
	err      error
}

// New returns a Collector for cfg. It does not touch Redis until the first
// Collect.
func New(cfg Config) (*Collector, error) {
	if cfg.Client == nil {
		return nil, errNoClient
	}
	for _, q := range cfg.Queues {
		if q == "" {
			return nil, errors.New("queuestats: Config.Queues holds an empty queue name")
		}
	}
	cfg.Queues = slices.Clone(cfg.Queues)
	slices.Sort(cfg.Queues)
	cfg.Queues = slices.Compact(cfg.Queues)
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MinInterval == 0 {
		cfg.MinInterval = DefaultMinInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Collector{cfg: cfg, insp: asynq.NewInspectorFromRedisClient(cfg.Client), now: time.Now}, nil
}

// Metric descriptions.
var (
	descTasks = prometheus.NewDesc("invalidator_queue_tasks",
		"Tasks in an asynq queue by state: pending, active, scheduled, retry, archived (dead letter), completed, aggregating.",
		[]string{"queue", "state"}, nil)
	descLatency = prometheus.NewDesc("invalidator_queue_latency_seconds",
		"Age of the oldest pending task of the queue; 0 when none is pending.",
		[]string{"queue"}, nil)
	descPaused = prometheus.NewDesc("invalidator_queue_paused",
		"1 while the queue is paused.",
		[]string{"queue"}, nil)
	descMemory = prometheus.NewDesc("invalidator_queue_memory_bytes",
		"Redis memory used by the queue and its tasks; an estimate from sampling.",
		[]string{"queue"}, nil)
	descProcessed = prometheus.NewDesc("invalidator_queue_processed_total",
		"Tasks processed from the queue by the whole fleet, all time (asynq's counter).",
		[]string{"queue"}, nil)
	descFailed = prometheus.NewDesc("invalidator_queue_failed_total",
		"Failed task runs of the queue in the whole fleet, all time (asynq's counter).",
		[]string{"queue"}, nil)
	descRecorded = prometheus.NewDesc("invalidator_dead_letter_recorded_tasks",
		"Dead-lettered tasks in invalidator's record of the queue, which asynq's archive cap does not trim; more than the archive holds means asynq trimmed some (they are kept here).",
		[]string{"queue"}, nil)
	descArchiveCap = prometheus.NewDesc("invalidator_queue_archive_cap",
		"How many archived tasks asynq keeps per queue: beyond it asynq deletes the oldest from its archive (the record keeps them).",
		[]string{"queue"}, nil)
	descUp = prometheus.NewDesc("invalidator_queue_stats_up",
		"1 if the queue stats could be read within the timeout, else 0 (and no per-queue series).",
		nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTasks, descLatency, descPaused, descMemory, descProcessed, descFailed, descRecorded, descArchiveCap, descUp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it sends the last refresh if it
// is younger than MinInterval, else waits at most Timeout for a new one.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s, err := c.snapshot()
	if err == nil {
		err = s.err
	}
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1)
	for i, q := range s.queues {
		for _, st := range []struct {
			state string
			n     int
		}{
			{StatePending, q.Pending}, {StateActive, q.Active}, {StateScheduled, q.Scheduled},
			{StateRetry, q.Retry}, {StateArchived, q.Archived}, {StateCompleted, q.Completed},
			{StateAggregating, q.Aggregating},
		} {
			ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(st.n), q.Queue, st.state)
		}
		ch <- prometheus.MustNewConstMetric(descLatency, prometheus.GaugeValue, q.Latency.Seconds(), q.Queue)
		paused := 0.0
		if q.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, paused, q.Queue)
		ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(q.MemoryUsage), q.Queue)
		ch <- prometheus.MustNewConstMetric(descProcessed, prometheus.CounterValue, float64(q.ProcessedTotal), q.Queue)
		ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(q.FailedTotal), q.Queue)
		ch <- prometheus.MustNewConstMetric(descRecorded, prometheus.GaugeValue, float64(s.recorded[i]), q.Queue)
		ch <- prometheus.MustNewConstMetric(descArchiveCap, prometheus.GaugeValue, worker.AsynqArchiveCap, q.Queue)
	}
}

// snapshot returns a fresh enough refresh, starting one if none is in
// flight. The asynq Inspector takes no context, so a refresh stuck on Redis
// cannot be cancelled: the scrape stops waiting after Timeout, and later
// scrapes wait on that same refresh rather than pile up new ones.
func (c *Collector) snapshot() (*snapshot, error) {
	c.mu.Lock()
	if s := c.snap; s != nil && c.cfg.MinInterval > 0 && c.now().Sub(s.at) < c.cfg.MinInterval {
		c.mu.Unlock()
		return s, nil
	}
	if c.running == nil {
		running := make(chan struct{})
		c.running = running
		go func() {
			s := c.refresh()
			if s.err != nil {
				c.cfg.Logger.Warn("read queue stats", "err", s.err)
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			c.snap, c.running = s, nil
			close(running)
		}()
	}
	running := c.running
	c.mu.Unlock()

	timer := time.NewTimer(c.cfg.Timeout)
	defer timer.Stop()
	select {
	case <-running:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.snap, nil
	case <-timer.C:
		err := fmt.Errorf("queue stats: no answer from the queue Redis within %s", c.cfg.Timeout)
		c.cfg.Logger.Warn("read queue stats", "err", err)
		return nil, err
	}
}

// refresh reads the stats of every exported queue.
func (c *Collector) refresh() *snapshot {
	s := &snapshot{}
	defer func() { s.at = c.now() }()
	known, err := c.insp.Queues()
	if err != nil {
		s.err = fmt.Errorf("list queues: %w", err)
		return s
	}
	names := c.cfg.Queues
	if len(names) == 0 {
		names = known
		slices.Sort(names)
	}
	for _, q := range names {
		if !slices.Contains(known, q) {
			// Nothing enqueued there yet: asynq would answer "not found".
			s.queues = append(s.queues, &asynq.QueueInfo{Queue: q})
			continue
		}
		info, err := c.insp.GetQueueInfo(q)
		if err != nil {
			s.err = fmt.Errorf("queue %q: %w", q, err)
			return s
		}
		s.queues = append(s.queues, info)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	for _, q := range s.queues {
		n, err := worker.DeadLetterSize(ctx, c.cfg.Client, q.Queue)
		if err != nil {
			s.err = err
			return s
		}
		s.recorded = append(s.recorded, n)
	}
	return s
}
