package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/outbox"
)

// outboxRig is one process test's outbox: a migrated private database, a
// cache Redis, a policy file and the environment for the binary.
type outboxRig struct {
	t     *testing.T
	bin   string
	db    *pgtest.DB
	cache *redis.Client
	w     *outbox.Writer
	env   []string

	mu   sync.Mutex
	keys []string // guarded by mu: every key whose invalidation committed
}

func newOutboxRig(t *testing.T, queueURL string) *outboxRig {
	t.Helper()
	bin := testBinary(t)
	db := pgtest.NewDB(t)
	_, err := outbox.Migrate(context.Background(), db.Pool, outbox.Config{})
	require.NoError(t, err)
	policyFile := writePolicy(t, cliPolicy)
	policy, err := keyspec.Load(policyFile)
	require.NoError(t, err)
	w, err := outbox.NewWriter(enqueue.NewBuilder(enqueue.Config{Policy: policy}), outbox.Config{})
	require.NoError(t, err)
	cache := redistest.NewDB(t)
	env := append(os.Environ(), envOutboxDSN+"="+db.DSN, envRedisURL+"="+queueURL, envPolicy+"="+policyFile,
		envCacheRedisURL+"="+cache.URL)
	return &outboxRig{t: t, bin: bin, db: db, cache: cache.Client, w: w, env: env}
}

// commit caches key and then, in one transaction, writes its deletion to
// the outbox and commits: the key must end up gone.
func (r *outboxRig) commit(key string) {
	t := r.t
	ctx := context.Background()
	require.NoError(t, r.cache.Set(ctx, key, "v", 0).Err())
	tx, err := r.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	require.NoError(t, r.w.DeleteKeys(ctx, outbox.Pgx(tx), key))
	require.NoError(t, tx.Commit(ctx))
	r.mu.Lock()
	r.keys = append(r.keys, key)
	r.mu.Unlock()
}

// commitMany commits n transactions of one key each, from 4 goroutines.
func (r *outboxRig) commitMany(prefix string, n int) {
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < n; i += 4 {
				r.commit(fmt.Sprintf("%s:%d", prefix, i))
			}
		})
	}
	wg.Wait()
}

func (r *outboxRig) rows() int {
	var n int
	require.NoError(r.t, r.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM invalidator_outbox`).Scan(&n))
	return n
}

// requireAllGone waits until every committed key is gone from the cache and
// the outbox is empty.
func (r *outboxRig) requireAllGone(d time.Duration, procs ...*proc) {
	t := r.t
	r.mu.Lock()
	keys := append([]string(nil), r.keys...)
	r.mu.Unlock()
	require.NotEmpty(t, keys)
	deadline := time.Now().Add(d)
	for {
		left, rows := existing(t, r.cache, keys...), r.rows()
		if left == 0 && rows == 0 {
			return
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			fmt.Fprintf(&b, "after %s: %d of %d keys still cached, %d outbox rows", d, left, len(keys), rows)
			for _, p := range procs {
				fmt.Fprintf(&b, "\n--- %v:\n%s", p.cmd.Args[1:], p.logs)
			}
			t.Fatal(b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// start starts the binary and waits for want in its logs. A worker gets
// no outbox DSN: it would run a relay of its own.
func (r *outboxRig) start(want string, args ...string) *proc {
	env := r.env
	if args[0] == "worker" {
		env = slicesWithout(env, envOutboxDSN+"=")
	}
	p := startProc(r.t, r.bin, env, args...)
	require.Eventually(r.t, func() bool { return strings.Contains(p.logs.String(), want) },
		30*time.Second, 10*time.Millisecond, "%v never logged %q:\n%s", args, want, p.logs)
	return p
}

var metricsAddrRE = regexp.MustCompile(`metrics on http://([^/]+)/metrics`)

// metricsURL is the base URL a process printed for its metrics server.
func metricsURL(t *testing.T, p *proc) string {
	t.Helper()
	var m []string
	require.Eventually(t, func() bool { m = metricsAddrRE.FindStringSubmatch(p.logs.String()); return m != nil },
		30*time.Second, 10*time.Millisecond, "no metrics address in:\n%s", p.logs)
	return "http://" + m[1]
}

var rowsRelayedRE = regexp.MustCompile(`(?m)^invalidator_outbox_rows_relayed_total (\S+)$`)

// rowsRelayed reads a process's invalidator_outbox_rows_relayed_total.
func rowsRelayed(t *testing.T, base string) int {
	t.Helper()
	_, body := httpGet(t, base+"/metrics")
	m := rowsRelayedRE.FindStringSubmatch(body)
	require.NotNil(t, m, body)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return int(v)
}

// relayArgs are short timers for tests.
var relayArgs = []string{"relay", "--poll-interval", "200ms", "--stats-interval", "200ms"}

// kill -9 of a relay with a batch in flight (rows claimed, uncommitted, and
// their enqueue stuck on a stalled queue Redis) loses nothing: PostgreSQL
// rolls the batch back when the relay's connection dies, and a second relay
// sends every row; a real worker then removes every key.
func TestRelayKillMidBatch(t *testing.T) {
	t.Parallel()
	queue := redistest.StartServer(t)
	r := newOutboxRig(t, queue.URL())
	first := r.start("outbox relay started", append(relayArgs, "--batch-size", "100")...)
	r.commitMany("before", 300) // relayed while all is well

	queue.Pause()
	resumed := false
	defer func() {
		if !resumed {
			queue.Resume()
		}
	}()
	r.commitMany("during", 1000)
	// The relay's round holds its claimed rows in an open transaction
	// while its enqueue waits on the stalled Redis.
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, r.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = $1 AND state = 'idle in transaction' AND query LIKE 'DELETE FROM%'`, r.db.Name).Scan(&n))
		return n == 1
	}, 30*time.Second, 5*time.Millisecond, "no batch in flight; relay logs:\n%s", first.logs)
	first.signal(t, syscall.SIGKILL)
	require.Error(t, first.wait(t, 10*time.Second))
	// The dead relay's batch is rolled back: every row of the stall is
	// still there once its session is gone.
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, r.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = $1 AND query LIKE 'DELETE FROM%'`, r.db.Name).Scan(&n))
		return n == 0
	}, 10*time.Second, 10*time.Millisecond)
	require.GreaterOrEqual(t, r.rows(), 1000, "rows of the stall were lost with the killed relay")
	queue.Resume()
	resumed = true

	second := r.start("outbox relay started", relayArgs...)
	w := r.start("worker started", "worker")
	r.requireAllGone(60*time.Second, second, w)
	for _, p := range []*proc{second, w} {
		p.signal(t, syscall.SIGTERM)
		require.NoError(t, p.wait(t, 20*time.Second), "logs:\n%s", p.logs)
	}
}

// The queue Redis is down for 10 s while transactions keep committing: the
// relay reports not ready meanwhile, the rows wait in the table, and once
// the Redis is back every row drains and every key is removed.
func TestRelayQueueRedisOutage(t *testing.T) {
	t.Parallel()
	queue := redistest.StartServerWith(t, redistest.ServerOptions{AppendOnly: true})
	r := newOutboxRig(t, queue.URL())
	relay := r.start("outbox relay started", append(relayArgs, "--metrics-addr", "127.0.0.1:0")...)
	base := metricsURL(t, relay)
	w := r.start("worker started", "worker")
	require.Eventually(t, func() bool { code, _ := httpGet(t, base+"/readyz"); return code == http.StatusOK },
		10*time.Second, 20*time.Millisecond)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // transactions commit all along
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r.commit(fmt.Sprintf("outage:%d", i))
			time.Sleep(5 * time.Millisecond) // a steady trickle, not a flood
		}
	})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	queue.Stop()
	downSince := time.Now()
	var body string
	require.Eventually(t, func() bool {
		var code int
		code, body = httpGet(t, base+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "outbox relay: ")
	}, 10*time.Second, 20*time.Millisecond, "readyz while the queue Redis is down: %s", body)
	require.Eventually(t, func() bool { return r.rows() > 0 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(time.Until(downSince.Add(10 * time.Second))) // the outage itself, not an assertion
	queue.Start()
	r.commitMany("after", 50)
	close(stop)
	wg.Wait()

	r.requireAllGone(60*time.Second, relay, w)
	require.Contains(t, relay.logs.String(), "outbox relay round failed; its rows stay and are retried")
	require.Eventually(t, func() bool { code, _ := httpGet(t, base+"/readyz"); return code == http.StatusOK },
		10*time.Second, 20*time.Millisecond)
	for _, p := range []*proc{relay, w} {
		p.signal(t, syscall.SIGTERM)
		require.NoError(t, p.wait(t, 20*time.Second), "logs:\n%s", p.logs)
	}
}

// Two relay processes on one outbox share the rows (each relays some) and
// together relay every one: no row is lost.
func TestRelayTwoProcessesShareWork(t *testing.T) {
	t.Parallel()
	queue := redistest.NewDB(t)
	r := newOutboxRig(t, queue.URL)
	args := append(relayArgs, "--batch-size", "20", "--metrics-addr", "127.0.0.1:0")
	a, b := r.start("outbox relay started", args...), r.start("outbox relay started", args...)
	aURL, bURL := metricsURL(t, a), metricsURL(t, b)
	w := r.start("worker started", "worker")

	total := 0
	for round := 0; ; round++ {
		require.Less(t, round, 5, "one relay did all the work: %d and %d rows", rowsRelayed(t, aURL), rowsRelayed(t, bURL))
		r.commitMany(fmt.Sprintf("share%d", round), 1000)
		total += 1000
		r.requireAllGone(60*time.Second, a, b, w)
		na, nb := rowsRelayed(t, aURL), rowsRelayed(t, bURL)
		require.GreaterOrEqual(t, na+nb, total, "rows relayed by the two")
		if na > 0 && nb > 0 {
			t.Logf("%d rows: relay A took %d, relay B %d", total, na, nb)
			break
		}
	}
	for _, p := range []*proc{a, b, w} {
		p.signal(t, syscall.SIGTERM)
		require.NoError(t, p.wait(t, 20*time.Second), "logs:\n%s", p.logs)
	}
}

// worker --outbox-dsn relays in the worker process: committed rows become
// removed keys with no other process, and the worker's /metrics and
// /readyz include the relay.
func TestWorkerOutboxDSN(t *testing.T) {
	t.Parallel()
	queue := redistest.NewDB(t)
	r := newOutboxRig(t, queue.URL)
	w := r.start("worker started", "worker", "--outbox-dsn", r.db.DSN, "--outbox-poll-interval", "200ms",
		"--outbox-stats-interval", "200ms", "--metrics-addr", "127.0.0.1:0")
	base := metricsURL(t, w)
	// The relay starts beside the worker, not before it.
	require.Eventually(t, func() bool { return strings.Contains(w.logs.String(), "outbox relay started") },
		20*time.Second, 10*time.Millisecond, "logs:\n%s", w.logs)
	r.commitMany("worker", 200)
	r.requireAllGone(30*time.Second, w)
	require.GreaterOrEqual(t, rowsRelayed(t, base), 200)
	var body string
	require.Eventually(t, func() bool {
		var code int
		code, body = httpGet(t, base+"/readyz")
		return code == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, body)
	require.Contains(t, body, "outbox relay: ok")
	require.Contains(t, body, "queue Redis: ok")

	w.signal(t, syscall.SIGTERM)
	require.NoError(t, w.wait(t, 20*time.Second), "logs:\n%s", w.logs)
	require.Contains(t, w.logs.String(), "outbox relay stopped")
}

// slicesWithout returns env without the entries that start with prefix.
func slicesWithout(env []string, prefix string) []string {
	out := make([]string, 0, len(env))
	for _, e := range env {
		if !strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}
