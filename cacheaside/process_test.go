package cacheaside_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
)

// The herd and crash tests need readers in another process: they run the
// test binary again with only TestHelperProcess selected, and talk to it
// over its stdin and stdout.

// childSpecEnv carries the JSON childSpec of TestHelperProcess; unset, the
// test is skipped.
const childSpecEnv = "CACHEASIDE_CHILD_SPEC"

// childSpec tells the child what to do.
type childSpec struct {
	// Mode "herd": Readers separate Caches read Key at once, when the parent
	// writes a line to stdin. Mode "hold": one Cache reads Key with a
	// loader that never returns, until the parent kills the process.
	Mode     string
	URL      string
	Key      string
	Readers  int
	Herd     int           // readers in all processes, mode "herd"
	Delay    time.Duration // each load's duration, mode "herd"
	LeaseTTL time.Duration
}

// childResult is what a "herd" child reports.
type childResult struct {
	OK      int           // reads that returned the loaded value
	Errors  []string      // the first few failed reads
	Slowest time.Duration // the slowest successful read
	Metrics map[string]float64
}

// Lines the child prints on stdout (a test binary's own output mixes in).
const (
	childReady   = "cacheaside-child ready"
	childLoading = "cacheaside-child loading"
	childResultP = "cacheaside-child result "
)

func TestHelperProcess(t *testing.T) {
	raw := os.Getenv(childSpecEnv)
	if raw == "" {
		t.Skip("runs only as the child of the herd and crash tests")
	}
	var spec childSpec
	require.NoError(t, json.Unmarshal([]byte(raw), &spec))
	opts, err := redis.ParseURL(spec.URL)
	require.NoError(t, err)
	rdb := readerClient(t, opts, spec.Readers)
	reg := prometheus.NewRegistry()
	m, err := cacheaside.NewMetrics(reg)
	require.NoError(t, err)
	newCache := func() *cacheaside.Cache {
		c, err := cacheaside.New(cacheaside.Config{Redis: rdb, Metrics: m, LeaseTTL: spec.LeaseTTL, Logger: discard()})
		require.NoError(t, err)
		return c
	}

	switch spec.Mode {
	case "hold":
		c := newCache()
		_, err := c.Get(context.Background(), spec.Key, func(ctx context.Context) ([]byte, error) {
			if err := rdb.Incr(ctx, loadsKey).Err(); err != nil {
				return nil, err
			}
			fmt.Println(childLoading)
			<-ctx.Done() // until LoadTimeout, which the parent's kill comes well before
			return nil, ctx.Err()
		})
		t.Fatalf("the holder's read returned (%v); the parent should have killed it", err)
	case "herd":
		caches := make([]*cacheaside.Cache, spec.Readers)
		for i := range caches {
			caches[i] = newCache()
		}
		fmt.Println(childReady)
		_, err := bufio.NewReader(os.Stdin).ReadString('\n')
		require.NoError(t, err, "the parent's go")
		res := readAll(rdb, caches, spec.Key, herdLoader(rdb, spec.Herd, spec.Delay))
		res.Metrics = herdMetrics(t, reg)
		b, err := json.Marshal(res)
		require.NoError(t, err)
		fmt.Println(childResultP + string(b))
	default:
		t.Fatalf("unknown mode %q", spec.Mode)
	}
}

// readerClient returns a client with a connection per reader, open before
// the readers start, as if each reader were a process: readers queueing for
// a connection, or dialling all at once, would delay the holder's renewals
// and store by seconds on a busy machine, and its lease would lapse.
func readerClient(t *testing.T, opts *redis.Options, readers int) *redis.Client {
	t.Helper()
	opts.PoolSize = max(readers, 10)
	opts.MinIdleConns = readers
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	require.Eventually(t, func() bool { return rdb.PoolStats().IdleConns >= uint32(readers) }, time.Minute, 10*time.Millisecond,
		"open %d connections", readers)
	return rdb
}

// loadsKey is the Redis counter of loader calls, across processes.
const loadsKey = "test:loads"

// herdValue is what the herd's loader returns.
const herdValue = "hot value"

// countingLoader counts its call on Redis, takes delay (a slow database)
// and returns herdValue.
func countingLoader(rdb redis.UniversalClient, delay time.Duration) cacheaside.Loader {
	return func(ctx context.Context) ([]byte, error) {
		if err := rdb.Incr(ctx, loadsKey).Err(); err != nil {
			return nil, err
		}
		if err := sleepCtx(ctx, delay); err != nil {
			return nil, err
		}
		return []byte(herdValue), nil
	}
}

// arrivedKey counts the readers of a herd that have started, across
// processes.
const arrivedKey = "test:arrived"

// waitRateKey holds the GET calls per second that Redis served while the
// herd's load ran, all other readers waiting: what waiting costs Redis.
const waitRateKey = "test:wait-gets-per-second"

// herdLoader is countingLoader for a herd of n readers: its delay starts
// once all of them have started their reads, so on a busy machine, where
// goroutines and processes start late, the herd still overlaps the load.
// It measures the GETs/s of the waiters during the delay into waitRateKey.
func herdLoader(rdb redis.UniversalClient, n int, delay time.Duration) cacheaside.Loader {
	return func(ctx context.Context) ([]byte, error) {
		for {
			// INCRBY 0 rather than GET, so that GET calls in INFO
			// commandstats are the herd's reads of its key alone.
			arrived, err := rdb.IncrBy(ctx, arrivedKey, 0).Result()
			if err != nil {
				return nil, err
			}
			if arrived >= int64(n) {
				break
			}
			if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
				return nil, err
			}
		}
		before, err := commandCalls(ctx, rdb)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		v, err := countingLoader(rdb, delay)(ctx)
		if err != nil {
			return nil, err
		}
		after, err := commandCalls(ctx, rdb)
		if err != nil {
			return nil, err
		}
		rate := float64(after["get"]-before["get"]) / time.Since(start).Seconds()
		return v, rdb.Set(ctx, waitRateKey, rate, 0).Err()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// readAll has every Cache read key once, all at once, and tallies the
// results. Each read counts itself at arrivedKey first.
func readAll(rdb redis.UniversalClient, caches []*cacheaside.Cache, key string, load cacheaside.Loader) childResult {
	var (
		mu  sync.Mutex
		res childResult
		wg  sync.WaitGroup
	)
	start := make(chan struct{})
	for _, c := range caches {
		wg.Go(func() {
			<-start
			began := time.Now()
			err := rdb.Incr(context.Background(), arrivedKey).Err()
			var v []byte
			if err == nil {
				v, err = c.Get(context.Background(), key, load)
			}
			took := time.Since(began)
			if err == nil && string(v) != herdValue {
				err = fmt.Errorf("wrong value %q", v)
			}
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				res.OK++
				res.Slowest = max(res.Slowest, took)
				return
			}
			if len(res.Errors) < 5 {
				res.Errors = append(res.Errors, err.Error())
			}
		})
	}
	close(start)
	wg.Wait()
	return res
}

// child is a running TestHelperProcess.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // its stdout, line by line; closed at EOF
}

// startChild runs TestHelperProcess with spec and kills it at cleanup.
func startChild(t *testing.T, spec childSpec) *child {
	t.Helper()
	raw, err := json.Marshal(spec)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childSpecEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	c := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 64)}
	go func() {
		defer close(c.lines)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			c.lines <- s.Text()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return c
}

// expect waits for the line that starts with prefix and returns the rest.
func (c *child) expect(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(time.Minute)
	var seen []string
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("the child exited before printing %q; it printed:\n%s", prefix, strings.Join(seen, "\n"))
			}
			if rest, found := strings.CutPrefix(l, prefix); found {
				return rest
			}
			seen = append(seen, l)
		case <-timeout:
			t.Fatalf("no %q from the child within a minute; it printed:\n%s", prefix, strings.Join(seen, "\n"))
		}
	}
}

// commandCalls returns the calls of each command so far (INFO commandstats).
func commandCalls(ctx context.Context, rdb redis.UniversalClient) (map[string]int64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	calls := map[string]int64{}
	for _, m := range regexp.MustCompile(`(?m)^cmdstat_([a-z|]+):calls=(\d+)`).FindAllStringSubmatch(info, -1) {
		n, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("commandstats line %q: %w", m[0], err)
		}
		calls[m[1]] = n
	}
	return calls, nil
}

// loads reads the cross-process loader counter.
func loads(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	n, err := rdb.Get(t.Context(), loadsKey).Int64()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	require.NoError(t, err)
	return n
}

// herdMetrics returns the counters of reg, by name without the common
// prefix and suffix.
func herdMetrics(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	m := map[string]float64{}
	for _, mf := range mfs {
		if c := mf.GetMetric()[0].GetCounter(); c != nil {
			name := strings.TrimSuffix(strings.TrimPrefix(mf.GetName(), "invalidator_cacheaside_"), "_total")
			m[name] = c.GetValue()
		}
	}
	return m
}
