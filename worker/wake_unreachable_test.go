package worker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
)

// holeConn drops writes and blocks reads (until the deadline) while hole is set:
// a master that is unreachable but not yet failed over.
type holeConn struct {
	net.Conn
	hole *atomic.Bool
	dl   atomic.Pointer[time.Time]
}

func (c *holeConn) SetReadDeadline(t time.Time) error {
	c.dl.Store(&t)
	return c.Conn.SetReadDeadline(t)
}
func (c *holeConn) SetDeadline(t time.Time) error { c.dl.Store(&t); return c.Conn.SetDeadline(t) }
func (c *holeConn) Write(b []byte) (int, error) {
	if c.hole.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}
func (c *holeConn) Read(b []byte) (int, error) {
	for c.hole.Load() {
		if d := c.dl.Load(); d != nil && !d.IsZero() && time.Now().After(*d) {
			return 0, &net.OpError{Op: "read", Net: "tcp", Err: timeoutErr{}}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return c.Conn.Read(b)
}

// logBuffer is a log sink safe for concurrent writes.
type logBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout (black hole)" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// On a Redis Cluster every idle worker waits on the one master of the
// {wake} slot. While that master is unreachable (not yet failed over), a
// wait must end at the safety poll and the worker poll for a while: before,
// BLPOP blocked up to the safety poll + 10 s (go-redis's read timeout for
// blocking commands) again and again, and each invalidation on a healthy
// queue master took 5-10 s.
func TestWakeMasterUnreachableDoesNotHoldQueues(t *testing.T) {
	t.Parallel()
	for _, pollOnly := range []bool{true, false} {
		t.Run(fmt.Sprintf("pollOnly=%v", pollOnly), func(t *testing.T) {
			ctx := context.Background()
			plain := redistest.Cluster(t)
			wm, err := plain.MasterForKey(ctx, "invalidator:{wake}:x")
			require.NoError(t, err)
			wakeAddr := wm.Options().Addr
			var q string
			for i := 0; ; i++ {
				q = fmt.Sprintf("%srvq%d", redistest.Prefix(t), i)
				m, err := plain.MasterForKey(ctx, "asynq:{"+q+"}:pending")
				require.NoError(t, err)
				if m.Options().Addr != wakeAddr {
					break
				}
			}
			var key string
			for i := 0; ; i++ {
				key = fmt.Sprintf("%sk%d", redistest.Prefix(t), i)
				m, _ := plain.MasterForKey(ctx, key)
				if m.Options().Addr != wakeAddr {
					break
				}
			}
			var hole atomic.Bool
			d := &net.Dialer{Timeout: 5 * time.Second}
			qc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.ClusterAddrs(t),
				Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := d.DialContext(ctx, network, addr)
					if err != nil || addr != wakeAddr {
						return c, err
					}
					return &holeConn{Conn: c, hole: &hole}, nil
				}})
			t.Cleanup(func() { _ = qc.Close() })
			p, err := keyspec.Parse("p.yaml", []byte("version: 1\ndefault_class: s\nclasses:\n  s: {ttl: 1m, queue: "+q+"}\n"))
			require.NoError(t, err)
			// asynq's own heartbeater writes its server record under a
			// random server ID, so one start in three puts it on the
			// {wake} master; asynq's processor then waits for the stalled
			// heartbeater whatever this package does, which is not what
			// this test is about. Start again until the record lies
			// elsewhere.
			insp := asynq.NewInspectorFromRedisClient(plain)
			var cancel context.CancelFunc
			var done chan error
			for attempt := 0; ; attempt++ {
				require.Less(t, attempt, 20, "asynq's server record kept landing on the {wake} master")
				logs := &logBuffer{}
				w, err := New(Config{Queue: qc, Cache: plain, Policy: p, Logger: slog.New(slog.NewTextHandler(logs, nil)),
					ShutdownTimeout: 2 * time.Second, NoRescue: true, PollOnly: pollOnly})
				require.NoError(t, err)
				var ctx2 context.Context
				ctx2, cancel = context.WithCancel(ctx)
				done = make(chan error, 1)
				go func() { done <- w.Run(ctx2) }()
				// Until the worker has started and asynq has written its
				// record (at start), rather than a fixed 2 s.
				var on bool
				require.Eventually(t, func() bool {
					var found bool
					on, found = asynqRecordOn(t, plain, insp, q, wakeAddr)
					return found && strings.Contains(logs.String(), "worker started")
				}, 20*time.Second, 10*time.Millisecond, "the worker did not start:\n%s", logs)
				if !on {
					break
				}
				cancel()
				<-done
			}
			defer func() { hole.Store(false); cancel(); <-done }()
			hole.Store(true) // the {wake} master goes silent
			time.Sleep(1500 * time.Millisecond)
			c, err := enqueue.New(plain, enqueue.Config{Policy: p})
			require.NoError(t, err)
			for i := 0; i < 3; i++ {
				require.NoError(t, plain.Set(ctx, key, "v", 0).Err())
				start := time.Now()
				_, err = c.DeleteKeys(ctx, key)
				require.NoError(t, err)
				for plain.Exists(ctx, key).Val() == 1 && time.Since(start) < 30*time.Second {
					time.Sleep(5 * time.Millisecond)
				}
				took := time.Since(start)
				t.Logf("queue %s healthy, {wake} master %s silent: invalidation %d applied after %v", q, wakeAddr, i, took.Round(time.Millisecond))
				// One failed wait (the safety poll, 1 s, and the
				// margin) at most, never go-redis's 10 s on top.
				require.Less(t, took, 4*time.Second, "an unreachable {wake} master held the dequeue loop")
			}
			_ = c.Close()
		})
	}
}

// asynqRecordOn reports whether the asynq server serving queue keeps its
// server record on the master at addr; found is false while there is no
// such record yet.
func asynqRecordOn(t *testing.T, c *redis.ClusterClient, insp *asynq.Inspector, queue, addr string) (on, found bool) {
	t.Helper()
	servers, err := insp.Servers()
	require.NoError(t, err)
	for _, srv := range servers {
		if _, ok := srv.Queues[queue]; !ok {
			continue
		}
		key := fmt.Sprintf("asynq:servers:{%s:%d:%s}", srv.Host, srv.PID, srv.ID)
		m, err := c.MasterForKey(context.Background(), key)
		require.NoError(t, err)
		return m.Options().Addr == addr, true
	}
	return false, false
}
