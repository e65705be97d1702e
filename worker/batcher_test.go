package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/internal/slot"
	"github.com/invalidator/invalidator/tasks"
)

// errInjected is the failure faultHook gives a command.
var errInjected = errors.New("injected failure")

// faultHook watches the UNLINKs of a client and fails chosen ones the way a
// real server can:
//   - a command carrying a key that starts with "poison:" fails, and is not
//     executed, while that key has failures left in its budget;
//   - every wholeEvery-th pipeline with an UNLINK fails as a whole: half of
//     them are not executed (the connection dropped before the write), half
//     are executed and still reported failed (the reply was lost).
type faultHook struct {
	budget     int           // failures of each poison key
	wholeEvery int           // 0: no whole-pipeline failures
	block      chan struct{} // if set, pipelines wait for it to close
	entered    chan struct{} // if set, told of each pipeline that waits

	mu        sync.Mutex     // guards the fields below
	left      map[string]int // poison key -> failures left; absent: budget
	failures  map[string]int // key -> failed commands that carried it
	pipelines int            // pipelines with an UNLINK
	unlinks   int            // UNLINK commands seen
	failed    int            // UNLINK commands failed
	wholes    int            // pipelines failed as a whole
	maxKeys   int            // most keys in one UNLINK
	crossSlot bool           // an UNLINK spanned hash slots
}

func newFaultHook(budget, wholeEvery int) *faultHook {
	return &faultHook{budget: budget, wholeEvery: wholeEvery, left: map[string]int{}, failures: map[string]int{}}
}

func (h *faultHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *faultHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *faultHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.block != nil {
			if h.entered != nil {
				h.entered <- struct{}{}
			}
			select {
			case <-h.block:
			case <-ctx.Done():
			}
		}
		var pass, fail []redis.Cmder
		h.mu.Lock()
		n := 0
		for _, c := range cmds {
			if c.Name() == "unlink" {
				n++
			}
		}
		whole, executeAnyway := false, false
		if n > 0 {
			h.pipelines++
			if h.wholeEvery > 0 && h.pipelines%h.wholeEvery == 0 {
				whole, executeAnyway = true, h.pipelines%(2*h.wholeEvery) == 0
				h.wholes++
			}
		}
		for _, c := range cmds {
			if c.Name() != "unlink" {
				pass = append(pass, c)
				continue
			}
			keys := cmdKeys(c)
			h.unlinks++
			h.maxKeys = max(h.maxKeys, len(keys))
			for _, k := range keys[1:] {
				h.crossSlot = h.crossSlot || slot.Of(k) != slot.Of(keys[0])
			}
			if whole || h.poisonedLocked(keys) {
				fail = append(fail, c)
				h.failed++
				for _, k := range keys {
					h.failures[k]++
				}
				continue
			}
			pass = append(pass, c)
		}
		h.mu.Unlock()

		if executeAnyway {
			pass = cmds
		}
		var err error
		if len(pass) > 0 {
			err = next(ctx, pass)
		}
		for _, c := range fail {
			c.SetErr(errInjected)
		}
		if len(fail) > 0 {
			return errInjected
		}
		return err
	}
}

// poisonedLocked reports whether a command carrying keys fails, and spends
// the budget of each poison key in it. h.mu must be held.
func (h *faultHook) poisonedLocked(keys []string) bool {
	fails := false
	for _, k := range keys {
		if !strings.HasPrefix(k, "poison:") {
			continue
		}
		left, ok := h.left[k]
		if !ok {
			left = h.budget
		}
		if left > 0 {
			h.left[k] = left - 1
			fails = true
		}
	}
	return fails
}

// failuresOf returns how many failed commands carried key.
func (h *faultHook) failuresOf(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failures[key]
}

func (h *faultHook) stats() (pipelines, unlinks, failed, wholes, maxKeys int, crossSlot bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pipelines, h.unlinks, h.failed, h.wholes, h.maxKeys, h.crossSlot
}

func cmdKeys(c redis.Cmder) []string {
	args := c.Args()[1:]
	keys := make([]string, len(args))
	for i, a := range args {
		keys[i] = a.(string)
	}
	return keys
}

func (b *batcher) waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

func (b *batcher) idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.senders == 0 && len(b.pending) == 0
}

// Many tasks with overlapping and distinct keys, through small chunks and
// batches, with command and pipeline failures injected: a task succeeds only
// once its own keys are gone, a task whose command failed gets an error and
// succeeds when retried, and in the end every key is gone.
func TestBatcherHammer(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	const (
		submitters = 32
		submits    = 40
		shared     = 300
		budget     = 2
	)
	hook := newFaultHook(budget, 9)
	sharedKeys := fill(t, rdb, shared, "shared:%d")
	// Each submit owns one key no other submit has: a precise witness of
	// whether a command that carried this submit's keys failed. Every fifth
	// owned key is poison.
	owned := func(g, j int) string {
		if j%5 == 0 {
			return fmt.Sprintf("poison:%d:%d", g, j)
		}
		return fmt.Sprintf("own:%d:%d", g, j)
	}
	var all []string
	for g := range submitters {
		for j := range submits {
			all = append(all, owned(g, j))
		}
	}
	SetKeys(t, rdb, all...)
	all = append(all, sharedKeys...)
	rdb.AddHook(hook)
	b := newBatcher(rdb, 50, 7, 2)

	// submitter runs submits of goroutine g, retrying each until it succeeds.
	submitter := func(g int) (firstTry, failedTry int, err error) {
		rng := rand.New(rand.NewPCG(uint64(g), 1))
		for j := range submits {
			own := owned(g, j)
			keys := []string{own}
			for range rng.IntN(20) {
				keys = append(keys, sharedKeys[rng.IntN(shared)])
			}
			rng.Shuffle(len(keys), func(a, b int) { keys[a], keys[b] = keys[b], keys[a] })
			errs := 0
			for {
				if errs == 50 {
					return 0, 0, fmt.Errorf("submit %s: still failing after %d attempts", own, errs)
				}
				before := hook.failuresOf(own)
				err := b.unlink(ctx, keys)
				failedCmd := hook.failuresOf(own) > before
				if err != nil {
					if !errors.Is(err, errInjected) {
						return 0, 0, fmt.Errorf("submit %s: unexpected error: %w", own, err)
					}
					errs++
					continue // as asynq would retry the task
				}
				if failedCmd {
					return 0, 0, fmt.Errorf("submit %s: reported success though a command carrying its key failed", own)
				}
				if n := rdb.Exists(ctx, keys...).Val(); n != 0 {
					return 0, 0, fmt.Errorf("submit %s: reported success with %d of its %d keys still present", own, n, len(keys))
				}
				break
			}
			if strings.HasPrefix(own, "poison:") && errs < budget {
				return 0, 0, fmt.Errorf("submit %s: %d errors, want at least %d", own, errs, budget)
			}
			if errs == 0 {
				firstTry++
			} else {
				failedTry++
			}
		}
		return firstTry, failedTry, nil
	}
	type result struct {
		firstTry, failedTry int
		err                 error
	}
	results := make(chan result, submitters)
	for g := range submitters {
		go func() {
			var r result
			r.firstTry, r.failedTry, r.err = submitter(g)
			results <- r
		}()
	}
	var firstTry, failedTry int
	for range submitters {
		r := <-results
		require.NoError(t, r.err)
		firstTry += r.firstTry
		failedTry += r.failedTry
	}
	require.Zero(t, CountExisting(t, rdb, all...), "keys left after every submit succeeded")
	pipelines, unlinks, failed, wholes, maxKeys, _ := hook.stats()
	t.Logf("submits: %d ok at once, %d after retries; %d pipelines, %d UNLINKs, %d failed, %d whole pipelines failed",
		firstTry, failedTry, pipelines, unlinks, failed, wholes)
	require.Positive(t, wholes, "no whole pipeline failed: the test proves less than it claims")
	require.GreaterOrEqual(t, failedTry, submitters*submits/5, "every poison submit must have failed at least once")
	require.Positive(t, firstTry, "a failure must not fail the other tasks of its batch")
	require.LessOrEqual(t, maxKeys, 7, "an UNLINK exceeded the chunk size")
	require.Eventually(t, b.idle, 10*time.Second, time.Millisecond)
}

// At low load a task's keys go out at once: nothing else is submitted, and
// each submit still completes.
func TestBatcherLowLoadSendsAtOnce(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	hook := newFaultHook(0, 0)
	rdb.AddHook(hook)
	b := newBatcher(rdb, DefaultBatchMaxKeys, DefaultDeleteChunk, 1)
	for i := range 20 {
		key := fmt.Sprintf("lone:%d", i)
		require.NoError(t, rdb.Set(context.Background(), key, "v", 0).Err()) // one command: the hook sees pipelines only
		// A generous bound, only so that a batcher waiting for company fails
		// the test instead of hanging it.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := b.unlink(ctx, []string{key})
		cancel()
		require.NoError(t, err, "submit %d", i)
		require.Zero(t, CountExisting(t, rdb, key))
		require.Eventually(t, b.idle, 10*time.Second, time.Millisecond, "the sender must give its slot back")
	}
	_, unlinks, _, _, _, _ := hook.stats()
	require.Equal(t, 20, unlinks, "one UNLINK per lone submit")
}

// A task whose ctx ends returns at once, whether its batch hangs on the
// wire or it still waits for a free slot; the batcher keeps working.
func TestBatcherCancelledTaskReturns(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	hook := newFaultHook(0, 0)
	hook.block = make(chan struct{})
	hook.entered = make(chan struct{}, 10)
	rdb.AddHook(hook)
	b := newBatcher(rdb, DefaultBatchMaxKeys, DefaultDeleteChunk, 1)
	require.NoError(t, rdb.MSet(context.Background(), "a", "v", "b", "v", "c", "v").Err()) // one command: the hook blocks pipelines

	ctxA, cancelA := context.WithCancel(context.Background())
	onWire := make(chan error, 1)
	go func() { onWire <- b.unlink(ctxA, []string{"a"}) }()
	<-hook.entered // a's batch holds the only slot and hangs
	ctxB, cancelB := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() { waiting <- b.unlink(ctxB, []string{"b"}) }()
	later := make(chan error, 1)
	go func() { later <- b.unlink(context.Background(), []string{"c"}) }()
	require.Eventually(t, func() bool { return b.waiting() == 2 }, 10*time.Second, time.Millisecond)
	cancelA()
	require.ErrorIs(t, <-onWire, context.Canceled)
	cancelB()
	require.ErrorIs(t, <-waiting, context.Canceled)
	close(hook.block)
	require.NoError(t, <-later)
	require.Zero(t, CountExisting(t, rdb, "c"))
	require.ErrorIs(t, b.unlink(ctxA, []string{"d"}), context.Canceled, "an ended ctx is not submitted")
	require.Eventually(t, b.idle, 10*time.Second, time.Millisecond)
	// The keys of the tasks that left were still sent: harmless, and no
	// request is lost in the queue.
	require.Zero(t, CountExisting(t, rdb, "a", "b"))
}

// Concurrent single-key tasks share UNLINKs: fewer commands than tasks.
func TestBatcherMerges(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	hook := newFaultHook(0, 0)
	const goroutines, each = 32, 30
	keys := fill(t, rdb, goroutines*each, "merge:%d")
	rdb.AddHook(hook)
	b := newBatcher(rdb, DefaultBatchMaxKeys, DefaultDeleteChunk, 1)
	errs := make(chan error, goroutines)
	for g := range goroutines {
		go func() {
			for j := range each {
				if err := b.unlink(context.Background(), []string{keys[g*each+j]}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range goroutines {
		require.NoError(t, <-errs)
	}
	require.Zero(t, CountExisting(t, rdb, keys...))
	_, unlinks, _, _, _, _ := hook.stats()
	t.Logf("%d submits in %d UNLINKs", len(keys), unlinks)
	require.Less(t, unlinks, len(keys), "no keys of concurrent submits were merged")
}

// On a Redis Cluster, merged keys are grouped by slot: no UNLINK crosses
// slots, and every chunk stays within DeleteChunk.
func TestBatcherClusterGroupsBySlot(t *testing.T) {
	t.Parallel()
	// A client of our own: hooks must not leak into the shared one.
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.ClusterAddrs(t)})
	t.Cleanup(func() { _ = cluster.Close() })
	p := redistest.Prefix(t)
	ctx := context.Background()
	const goroutines, each = 16, 40
	var keys []string
	for i := range goroutines * each {
		if i%3 == 0 {
			keys = append(keys, fmt.Sprintf("%s:{tag%d}:%d", p, i%7, i)) // a few crowded slots
		} else {
			keys = append(keys, fmt.Sprintf("%s:k:%d", p, i)) // spread over every master
		}
	}
	SetKeys(t, cluster, keys...)
	hook := newFaultHook(0, 0)
	cluster.AddHook(hook)
	b := newBatcher(cluster, 200, 5, 1)
	errs := make(chan error, goroutines)
	for g := range goroutines {
		go func() {
			for j := 0; j < each; j += 4 {
				if err := b.unlink(ctx, keys[g*each+j:g*each+j+4]); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range goroutines {
		require.NoError(t, <-errs)
	}
	for _, k := range keys {
		require.Zero(t, cluster.Exists(ctx, k).Val(), "key %q still present", k)
	}
	_, unlinks, _, _, maxKeys, crossSlot := hook.stats()
	require.False(t, crossSlot, "an UNLINK crossed slots")
	require.LessOrEqual(t, maxKeys, 5)
	require.Positive(t, unlinks)
}

// The command split is exact: every key in exactly one command, chunks
// within the limit and one slot, and each command names the requests whose
// keys it carries.
func TestBatcherCommands(t *testing.T) {
	t.Parallel()
	batch := []*deleteRequest{
		{keys: []string{"{a}1", "{a}2", "{b}1", "{a}3"}},
		{keys: []string{"{b}2", "{a}4", "{a}5", "{a}6"}},
		{keys: []string{"{c}1"}},
	}
	owner := map[string]int{}
	for i, r := range batch {
		for _, k := range r.keys {
			owner[k] = i
		}
	}
	for _, cluster := range []bool{false, true} {
		b := &batcher{cluster: cluster, chunk: 3}
		cmds, owners := b.commands(batch)
		require.Len(t, owners, len(cmds))
		seen := 0
		for i, keys := range cmds {
			require.LessOrEqual(t, len(keys), 3)
			want := map[int]bool{}
			for _, k := range keys {
				if cluster {
					require.Equal(t, slot.Of(keys[0]), slot.Of(k), "cluster=%v: %v crosses slots", cluster, keys)
				}
				want[owner[k]] = true
			}
			got := map[int]bool{}
			for _, o := range owners[i] {
				require.False(t, got[o], "owner %d listed twice", o)
				got[o] = true
			}
			require.Equal(t, want, got, "cluster=%v: owners of command %v", cluster, keys)
			seen += len(keys)
		}
		require.Equal(t, 9, seen, "cluster=%v: keys lost or doubled", cluster)
		if !cluster {
			require.Len(t, cmds, 3)
		}
	}
}

// ProcessTask works without Run: concurrent DeleteKeys tasks go through the
// batcher, which leaves no goroutine behind.
func TestProcessTaskWithoutRunBatches(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	other := redistest.Client(t)
	w, err := New(Config{Queue: rdb, Targets: map[string]redis.UniversalClient{"other": other}, Logger: quiet()})
	require.NoError(t, err)
	keys := fill(t, rdb, 200, "pt:%d")
	otherKeys := fill(t, other, 200, "pt:%d")
	errs := make(chan error, 40)
	for i := range 40 {
		target, ks := "", keys
		if i%2 == 1 {
			target, ks = "other", otherKeys
		}
		payload, err := tasks.Marshal(tasks.DeleteKeys{Keys: ks[i/2*10 : i/2*10+10], Target: target})
		require.NoError(t, err)
		go func() { errs <- w.ProcessTask(context.Background(), asynq.NewTask(tasks.KindDeleteKeys, payload)) }()
	}
	for range 40 {
		require.NoError(t, <-errs)
	}
	require.Zero(t, CountExisting(t, rdb, keys...))
	require.Zero(t, CountExisting(t, other, otherKeys...))
	for name, tg := range w.targets {
		require.Eventually(t, tg.batch.idle, 10*time.Second, time.Millisecond, "batcher %q", name)
	}
}
