package queuestats_test

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/queuestats"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/worker"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type bundle struct {
	db    *redistest.DB
	queue string
	insp  *asynq.Inspector
	ids   []string // tasks enqueued by fill, in order
}

// setup fills a queue with 3 pending tasks, 1 archived and 1 scheduled.
func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{db: redistest.NewDB(t), queue: "invalidator-" + redistest.Prefix(t)}
	b.insp = asynq.NewInspectorFromRedisClient(b.db.Client)
	b.enqueue(t, 4)
	require.NoError(t, b.insp.ArchiveTask(b.queue, b.ids[0]))
	b.enqueue(t, 1, asynq.ProcessIn(time.Hour))
	return b
}

func (b *bundle) enqueue(t *testing.T, n int, opts ...asynq.Option) {
	t.Helper()
	cl := asynq.NewClientFromRedisClient(b.db.Client)
	for range n {
		ti, err := cl.EnqueueContext(t.Context(), asynq.NewTask("invalidate:keys", []byte("x")), append(opts, asynq.Queue(b.queue))...)
		require.NoError(t, err)
		b.ids = append(b.ids, ti.ID)
	}
}

func (b *bundle) collector(t *testing.T, cfg queuestats.Config) *prometheus.Registry {
	t.Helper()
	cfg.Client, cfg.Logger = b.db.Client, quiet
	c, err := queuestats.New(cfg)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(c))
	return reg
}

// tasksText is the expected exposition of invalidator_queue_tasks for one queue.
func tasksText(queue string, pending, scheduled, archived int) string {
	var b strings.Builder
	b.WriteString("# HELP invalidator_queue_tasks Tasks in an asynq queue by state: pending, active, scheduled, retry, archived (dead letter), completed, aggregating.\n")
	b.WriteString("# TYPE invalidator_queue_tasks gauge\n")
	for _, s := range []struct {
		state string
		n     int
	}{{"active", 0}, {"aggregating", 0}, {"archived", archived}, {"completed", 0}, {"pending", pending}, {"retry", 0}, {"scheduled", scheduled}} {
		b.WriteString(`invalidator_queue_tasks{queue="` + queue + `",state="` + s.state + `"} ` + itoa(s.n) + "\n")
	}
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// value returns the sample of metric name with label queue=q.
func value(t *testing.T, g prometheus.Gatherer, name, q string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "queue" && l.GetValue() == q {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{queue=%q}", name, q)
	return 0
}

func TestCollector_AllQueues(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reg := b.collector(t, queuestats.Config{})
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(tasksText(b.queue, 3, 1, 1)+`
# HELP invalidator_queue_stats_up 1 if the queue stats could be read within the timeout, else 0 (and no per-queue series).
# TYPE invalidator_queue_stats_up gauge
invalidator_queue_stats_up 1
# HELP invalidator_queue_paused 1 while the queue is paused.
# TYPE invalidator_queue_paused gauge
invalidator_queue_paused{queue="`+b.queue+`"} 0
`), "invalidator_queue_tasks", "invalidator_queue_stats_up", "invalidator_queue_paused"))
	require.Greater(t, value(t, reg, "invalidator_queue_latency_seconds", b.queue), 0.0, "the oldest pending task has waited")
	require.Greater(t, value(t, reg, "invalidator_queue_memory_bytes", b.queue), 0.0)
	require.Zero(t, value(t, reg, "invalidator_queue_processed_total", b.queue))
	require.Zero(t, value(t, reg, "invalidator_queue_failed_total", b.queue))

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
}

func TestCollector_ExplicitQueues(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other := "invalidator-" + redistest.Prefix(t) // nothing enqueued there yet
	reg := b.collector(t, queuestats.Config{Queues: []string{other, b.queue, other}})
	require.NoError(t, testutil.GatherAndCompare(reg,
		strings.NewReader(tasksText(b.queue, 3, 1, 1)+strings.Join(strings.Split(tasksText(other, 0, 0, 0), "\n")[2:], "\n")),
		"invalidator_queue_tasks"))
	require.Zero(t, value(t, reg, "invalidator_queue_latency_seconds", other))

	require.NoError(t, b.insp.PauseQueue(b.queue))
	reg = b.collector(t, queuestats.Config{Queues: []string{b.queue}})
	require.Equal(t, 1.0, value(t, reg, "invalidator_queue_paused", b.queue))
}

func TestCollector_CachesForMinInterval(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cached := b.collector(t, queuestats.Config{MinInterval: time.Hour})
	fresh := b.collector(t, queuestats.Config{MinInterval: -1})
	require.Equal(t, 3, pending(t, cached, b.queue))
	require.Equal(t, 3, pending(t, fresh, b.queue))

	b.enqueue(t, 2)
	require.Equal(t, 3, pending(t, cached, b.queue), "within MinInterval the last refresh is served")
	require.Equal(t, 5, pending(t, fresh, b.queue))
}

func pending(t *testing.T, g prometheus.Gatherer, q string) int {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "invalidator_queue_tasks" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["queue"] == q && labels["state"] == "pending" {
				return int(m.GetGauge().GetValue())
			}
		}
	}
	t.Fatalf("no pending count for %q", q)
	return 0
}

// A Redis that accepts connections but never answers must not hold a scrape
// beyond Timeout.
func TestCollector_TimeoutMarksDown(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = conn.Close() }) // hold it open, say nothing
		}
	}()
	client := redis.NewClient(&redis.Options{Addr: l.Addr().String(), ReadTimeout: 10 * time.Second, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	c, err := queuestats.New(queuestats.Config{Client: client, Timeout: 100 * time.Millisecond, Logger: quiet})
	require.NoError(t, err)

	for range 3 { // later scrapes wait on the same stuck refresh
		start := time.Now()
		require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP invalidator_queue_stats_up 1 if the queue stats could be read within the timeout, else 0 (and no per-queue series).
# TYPE invalidator_queue_stats_up gauge
invalidator_queue_stats_up 0
`)))
		require.Less(t, time.Since(start), 2*time.Second)
	}
}

func TestNew_RequiresClient(t *testing.T) {
	t.Parallel()
	_, err := queuestats.New(queuestats.Config{})
	require.ErrorContains(t, err, "Config.Client is nil")
	client := redis.NewClient(&redis.Options{})
	t.Cleanup(func() { _ = client.Close() })
	_, err = queuestats.New(queuestats.Config{Client: client, Queues: []string{""}})
	require.ErrorContains(t, err, "empty queue name")
}

// The dead letter beyond asynq's archive: the size of invalidator's record
// (invalidator:dead:{<queue>}), next to asynq's cap, for the alert that
// fires before asynq starts trimming.
func TestCollector_DeadLetterRecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.db.Client.HSet(t.Context(), "invalidator:dead:{"+b.queue+"}", "t1", "{}", "t2", "{}", "t3", "{}").Err())
	reg := b.collector(t, queuestats.Config{})
	require.Equal(t, 3.0, value(t, reg, "invalidator_dead_letter_recorded_tasks", b.queue))
	require.Equal(t, float64(worker.AsynqArchiveCap), value(t, reg, "invalidator_queue_archive_cap", b.queue))
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
}
