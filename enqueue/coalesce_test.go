package enqueue

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// These tests live in package enqueue so they can end windows by hand
// (manualTimers) instead of racing real timers on a loaded machine.

const coalescePolicy = `
version: 1
default_class: standard
classes:
  standard: {ttl: 10m, max_retry: 5, timeout: 20s}
  critical: {ttl: 1m, max_retry: 25, timeout: 5s, queue: prices}
`

// waitFor bounds every wait for a result; generous, since it only ever
// catches a hang.
const waitFor = 10 * time.Second

type coalesceBundle struct {
	db     *redistest.DB
	client *Client
	timers *manualTimers // nil with real timers
	insp   *asynq.Inspector
	base   time.Time
}

// coalesceSetup returns a coalescing Client whose windows end only when the
// test fires them (real timers with realTimers). Now returns base+1ms,
// base+2ms, ... so the earliest caller is known.
func coalesceSetup(t *testing.T, cc CoalesceConfig, realTimers bool) *coalesceBundle {
	t.Helper()
	db := redistest.NewDB(t)
	return coalesceSetupOn(t, db, db.Client, cc, realTimers)
}

func coalesceSetupOn(t *testing.T, db *redistest.DB, rdb redis.UniversalClient, cc CoalesceConfig, realTimers bool) *coalesceBundle {
	t.Helper()
	policy, err := keyspec.Parse("p.yaml", []byte(coalescePolicy))
	require.NoError(t, err)
	base := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var ticks atomic.Int64
	now := func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * time.Millisecond) }
	c, err := New(rdb, Config{Policy: policy, Now: now, Coalesce: &cc})
	require.NoError(t, err)
	b := &coalesceBundle{db: db, client: c, insp: asynq.NewInspectorFromRedisClient(db.Client), base: base}
	if !realTimers {
		b.timers = &manualTimers{}
		c.co.afterFunc = b.timers.afterFunc
	}
	// These tests hold one lone flush in flight (lead) and gather calls
	// behind it; the lone flushes that go side by side at a light load
	// have tests of their own, which set coalesceMaxLone back.
	c.co.maxLone = 1
	t.Cleanup(func() { _ = c.Close() })
	return b
}

// keysOf returns the keys of the DeleteKeys task id in queue.
func (b *coalesceBundle) keysOf(t *testing.T, queue, id string) (tasks.DeleteKeys, *asynq.TaskInfo) {
	t.Helper()
	ti, err := b.insp.GetTaskInfo(queue, id)
	require.NoError(t, err)
	decoded, err := tasks.Unmarshal(ti.Type, ti.Payload)
	require.NoError(t, err)
	return decoded.(tasks.DeleteKeys), ti
}

func (b *coalesceBundle) pending(t *testing.T, queue string) int {
	t.Helper()
	info, err := b.insp.GetQueueInfo(queue)
	require.NoError(t, err)
	return info.Pending
}

// pendingCalls counts the calls waiting in open batches.
func (co *coalescer) pendingCalls() int {
	co.mu.Lock()
	defer co.mu.Unlock()
	n := 0
	for _, b := range co.batches {
		n += b.calls
	}
	return n
}

func (b *coalesceBundle) waitPending(t *testing.T, calls int) {
	t.Helper()
	require.Eventually(t, func() bool { return b.client.co.pendingCalls() == calls },
		waitFor, time.Millisecond, "want %d calls waiting in open batches", calls)
}

type result struct {
	ids []string
	err error
}

// call runs DeleteKeys in a goroutine and returns where its result arrives.
func call(ctx context.Context, c *Client, keys ...string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		ids, err := c.DeleteKeys(ctx, keys...)
		ch <- result{ids, err}
	}()
	return ch
}

func await(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitFor):
		t.Fatal("DeleteKeys did not return")
		return result{}
	}
}

func requireWaiting(t *testing.T, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("DeleteKeys returned %v, %v before its batch was flushed", r.ids, r.err)
	case <-time.After(20 * time.Millisecond):
	}
}

// manualTimers stands in for time.AfterFunc: a window ends when fire is
// called.
type manualTimers struct {
	mu     sync.Mutex
	timers []*manualTimer
}

type manualTimer struct {
	d       time.Duration
	f       func()
	stopped bool
}

func (m *manualTimers) afterFunc(d time.Duration, f func()) func() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt := &manualTimer{d: d, f: f}
	m.timers = append(m.timers, mt)
	return func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		was := !mt.stopped
		mt.stopped = true
		return was
	}
}

func (m *manualTimers) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.timers)
}

func (m *manualTimers) window(i int) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.timers[i].d
}

func (m *manualTimers) stopped(i int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.timers[i].stopped
}

// fire runs timer i's function, even if it was stopped: a real timer can
// fire just as the batch is detached, and that must be harmless.
func (m *manualTimers) fire(i int) {
	m.mu.Lock()
	f := m.timers[i].f
	m.mu.Unlock()
	f()
}

// flushGate holds every flush in flight until the test releases it, so a
// test can decide when a round trip ends. It is installed as the
// coalescer's send.
type flushGate struct {
	entered chan heldFlush
	done    chan struct{} // closed by passAll: flushes no longer wait
	once    sync.Once
}

// heldFlush is one flush waiting at the gate: the batch it carries and the
// channel that lets it go on to Redis.
type heldFlush struct {
	b       *batch
	release chan struct{}
}

// holdFlushes makes every later flush of b's client wait for the test. At
// cleanup, before Close, the gate opens, so a failed test never hangs.
func (b *coalesceBundle) holdFlushes(t *testing.T) *flushGate {
	t.Helper()
	g := &flushGate{entered: make(chan heldFlush, 64), done: make(chan struct{})}
	send := b.client.co.send
	b.client.co.send = func(ctx context.Context, bt *batch) (string, error) {
		h := heldFlush{b: bt, release: make(chan struct{})}
		select {
		case g.entered <- h:
			select {
			case <-h.release:
			case <-g.done:
			}
		case <-g.done: // nobody may be reading entered any more
		}
		return send(ctx, bt)
	}
	t.Cleanup(g.passAll)
	return g
}

// next returns the next flush to reach the gate.
func (g *flushGate) next(t *testing.T) heldFlush {
	t.Helper()
	select {
	case h := <-g.entered:
		return h
	case <-time.After(waitFor):
		t.Fatal("no flush started")
		return heldFlush{}
	}
}

// requireNone checks that no flush reaches the gate for a while.
func (g *flushGate) requireNone(t *testing.T) {
	t.Helper()
	select {
	case h := <-g.entered:
		t.Fatalf("unexpected flush of %d calls with keys %q", h.b.calls, h.b.keys)
	case <-time.After(20 * time.Millisecond):
	}
}

// passAll lets every held and later flush go on.
func (g *flushGate) passAll() { g.once.Do(func() { close(g.done) }) }

// lead makes one call with keys through c and waits until its flush is held
// at the gate: from then on, calls of c's overrides gather in an open batch.
func (b *coalesceBundle) lead(t *testing.T, g *flushGate, c *Client, keys ...string) (<-chan result, heldFlush) {
	t.Helper()
	ch := call(context.Background(), c, keys...)
	h := g.next(t)
	require.Equal(t, keys, h.b.keys, "a call with no flush in flight is flushed alone, at once")
	return ch, h
}

func TestCoalesceConfigIsValidated(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	for _, tc := range []struct {
		cc   CoalesceConfig
		want string
	}{
		{CoalesceConfig{}, "coalesce window 0s is outside (0, 10ms]"},
		{CoalesceConfig{Window: -time.Millisecond}, "coalesce window -1ms is outside"},
		{CoalesceConfig{Window: 11 * time.Millisecond}, "coalesce window 11ms is outside"},
		{CoalesceConfig{Window: time.Millisecond, MaxKeys: -1}, "coalesce max keys -1 is outside [1, 1000]"},
		{CoalesceConfig{Window: time.Millisecond, MaxKeys: tasks.MaxKeysPerTask + 1}, "coalesce max keys 1001"},
	} {
		_, err := New(rdb, Config{Coalesce: &tc.cc})
		require.ErrorContains(t, err, tc.want)
		// Refused before connecting: nothing to leak.
		_, err = NewFromURL("redis://127.0.0.1:1/0", Config{Coalesce: &tc.cc})
		require.ErrorContains(t, err, tc.want)
	}
	c, err := New(rdb, Config{Coalesce: &CoalesceConfig{Window: MaxCoalesceWindow}})
	require.NoError(t, err)
	require.Equal(t, tasks.MaxKeysPerTask, c.co.maxKeys)
	require.NoError(t, c.Close())
}

// Coalescing is the default; NoCoalesce turns it off, and asking for both
// is refused rather than one of them silently winning.
func TestCoalesceIsOnByDefault(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	c, err := New(rdb, Config{})
	require.NoError(t, err)
	require.NotNil(t, c.co, "a Client coalesces unless told not to")
	require.Equal(t, DefaultCoalesceWindow, c.co.window)
	require.Equal(t, tasks.MaxKeysPerTask, c.co.maxKeys)
	require.NoError(t, c.Close())
	_, err = c.DeleteKeys(context.Background(), "after-close")
	require.ErrorIs(t, err, ErrClosed)

	off, err := New(rdb, Config{NoCoalesce: true})
	require.NoError(t, err)
	require.Nil(t, off.co)
	ids := make([][]string, 16)
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() { ids[i], errs[i] = off.DeleteKeys(context.Background(), fmt.Sprint("own", i)) })
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range ids {
		require.NoError(t, errs[i])
		require.Len(t, ids[i], 1)
		seen[ids[i][0]] = true
	}
	require.Len(t, seen, len(ids), "without coalescing every call is a task of its own")
	require.NoError(t, off.Close())

	_, err = New(rdb, Config{NoCoalesce: true, Coalesce: &CoalesceConfig{Window: time.Millisecond}})
	require.ErrorContains(t, err, "Coalesce and NoCoalesce are both set")
}

func TestCoalesceLoneCallerIsFlushedAtOnce(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: MaxCoalesceWindow}, false)
	ctx := context.Background()
	for i := range 3 {
		// No timer is ever fired here: each call, alone, goes out at once.
		r := await(t, call(ctx, b.client, fmt.Sprint("alone", i)))
		require.NoError(t, r.err)
		require.Len(t, r.ids, 1)
		dk, _ := b.keysOf(t, "invalidator-standard", r.ids[0])
		require.Equal(t, []string{fmt.Sprint("alone", i)}, dk.Keys)
		require.True(t, b.base.Add(time.Duration(i+1)*time.Millisecond).Equal(dk.EnqueuedAt))
	}
	// No timer is fired, and none is left running. (A call made while the
	// flush ahead of it yields, after telling its callers, opens a window
	// that this flush stops: it goes out at once all the same.)
	for i := range b.timers.count() {
		require.True(t, b.timers.stopped(i), "a lone call left window %d running", i)
	}
	require.Equal(t, 3, b.pending(t, "invalidator-standard"))
}

// Group commit: calls that arrive while a flush is in flight gather in one
// batch, which goes out as soon as that flush ends, without waiting for its
// window.
func TestCoalesceCallsDuringAFlushGoOutTogetherRightAfterIt(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: 2 * time.Millisecond}, false)
	g := b.holdFlushes(t)
	lead, held := b.lead(t, g, b.client, "lead")

	const n = 20
	var want []string
	chans := make([]<-chan result, n)
	for i := range n {
		keys := []string{fmt.Sprintf("k%02d", i), fmt.Sprintf("k%02d\xff", i)}
		want = append(want, keys...)
		chans[i] = call(context.Background(), b.client, keys...)
	}
	b.waitPending(t, n)
	require.Equal(t, 1, b.timers.count(), "only the first call of an open batch starts a window")
	require.Equal(t, 2*time.Millisecond, b.timers.window(0))
	g.requireNone(t) // one flush in flight at a time
	requireWaiting(t, chans[0])

	close(held.release)
	rLead := await(t, lead)
	require.NoError(t, rLead.err)
	next := g.next(t) // no window was fired
	require.Equal(t, n, next.b.calls)
	require.True(t, b.timers.stopped(0), "a batch flushed after the one ahead of it stops its window's timer")
	close(next.release)

	var id string
	for i, ch := range chans {
		r := await(t, ch)
		require.NoError(t, r.err)
		require.Len(t, r.ids, 1)
		if i == 0 {
			id = r.ids[0]
		}
		require.Equal(t, id, r.ids[0], "every caller gets the ID of the shared task")
	}
	require.NotEqual(t, rLead.ids[0], id)
	require.Equal(t, 2, b.pending(t, "invalidator-standard"))
	dk, ti := b.keysOf(t, "invalidator-standard", id)
	require.ElementsMatch(t, want, dk.Keys)
	// The lead took base+1ms; the earliest of the others took base+2ms,
	// whatever order they joined in.
	require.True(t, b.base.Add(2*time.Millisecond).Equal(dk.EnqueuedAt), "EnqueuedAt is the earliest caller's time, got %v", dk.EnqueuedAt)
	require.Equal(t, 5, ti.MaxRetry)
	require.Zero(t, b.client.co.pendingCalls())
}

// The window bounds the wait: a batch goes out when its window ends even if
// the flush ahead of it never finishes.
func TestCoalesceWindowBoundsABatchWhileAFlushIsStuck(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: time.Millisecond}, false)
	g := b.holdFlushes(t)
	lead, held := b.lead(t, g, b.client, "stuck")

	first := call(context.Background(), b.client, "w1")
	second := call(context.Background(), b.client, "w2", "w3")
	b.waitPending(t, 2)
	requireWaiting(t, first)

	b.timers.fire(0)
	h := g.next(t) // while "stuck" is still held
	require.ElementsMatch(t, []string{"w1", "w2", "w3"}, h.b.keys)
	close(h.release)
	r1, r2 := await(t, first), await(t, second)
	require.NoError(t, r1.err)
	require.NoError(t, r2.err)
	require.Equal(t, r1.ids, r2.ids)
	dk, _ := b.keysOf(t, "invalidator-standard", r1.ids[0])
	require.ElementsMatch(t, []string{"w1", "w2", "w3"}, dk.Keys)
	requireWaiting(t, lead)

	// Two flushes are in flight now that the window cut in; the next batch
	// waits for the stuck one, then goes out right after it.
	third := call(context.Background(), b.client, "w4")
	b.waitPending(t, 1)
	close(held.release)
	require.NoError(t, await(t, lead).err)
	h = g.next(t)
	require.Equal(t, []string{"w4"}, h.b.keys)
	close(h.release)
	require.NoError(t, await(t, third).err)
	require.Equal(t, 3, b.pending(t, "invalidator-standard"))
}

func TestCoalesceFullBatchFlushesAtOnce(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: time.Millisecond, MaxKeys: 5}, false)
	g := b.holdFlushes(t)
	ctx := context.Background()
	lead, held := b.lead(t, g, b.client, "lead")

	var chans []<-chan result
	for i := range 5 {
		chans = append(chans, call(ctx, b.client, fmt.Sprint("full", i)))
	}
	// No window is ever fired here, and the lead's flush is still held.
	h := g.next(t)
	require.Len(t, h.b.keys, 5)
	close(h.release)
	var ids []string
	for _, ch := range chans {
		r := await(t, ch)
		require.NoError(t, r.err)
		ids = append(ids, r.ids...)
	}
	require.Len(t, ids, 5)
	for _, id := range ids {
		require.Equal(t, ids[0], id)
	}
	require.True(t, b.timers.stopped(0), "a full batch stops its window's timer")
	dk, _ := b.keysOf(t, "invalidator-standard", ids[0])
	require.Len(t, dk.Keys, 5)

	// A call that would overflow the open batch flushes it at once and
	// opens the next.
	first := call(ctx, b.client, "a1", "a2", "a3")
	b.waitPending(t, 1)
	second := call(ctx, b.client, "b1", "b2", "b3")
	h = g.next(t)
	require.Equal(t, []string{"a1", "a2", "a3"}, h.b.keys)
	close(h.release)
	r1 := await(t, first)
	require.NoError(t, r1.err)
	b.waitPending(t, 1)
	requireWaiting(t, second)
	b.timers.fire(b.timers.count() - 1)
	h = g.next(t)
	require.Equal(t, []string{"b1", "b2", "b3"}, h.b.keys)
	close(h.release)
	r2 := await(t, second)
	require.NoError(t, r2.err)
	require.NotEqual(t, r1.ids, r2.ids)
	dk, _ = b.keysOf(t, "invalidator-standard", r1.ids[0])
	require.Equal(t, []string{"a1", "a2", "a3"}, dk.Keys)
	dk, _ = b.keysOf(t, "invalidator-standard", r2.ids[0])
	require.Equal(t, []string{"b1", "b2", "b3"}, dk.Keys)

	close(held.release)
	require.NoError(t, await(t, lead).err)
}

func TestCoalesceLargeAndInvalidCallsAreNotCoalesced(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: time.Millisecond, MaxKeys: 2}, false)
	ctx := context.Background()

	// More keys than MaxKeys: enqueued at once, no window.
	ids, err := b.client.DeleteKeys(ctx, "x", "y", "z")
	require.NoError(t, err)
	require.Len(t, ids, 1)
	dk, _ := b.keysOf(t, "invalidator-standard", ids[0])
	require.Equal(t, []string{"x", "y", "z"}, dk.Keys)

	// Refusals come at once too, without waiting for a window.
	_, err = b.client.DeleteKeys(ctx, "ok", "")
	require.ErrorIs(t, err, tasks.ErrInvalid)
	_, err = b.client.With(Queue("urgent")).DeleteKeys(ctx, "k")
	require.ErrorIs(t, err, ErrUnknownQueue)
	ctxDone, cancel := context.WithCancel(ctx)
	cancel()
	_, err = b.client.DeleteKeys(ctxDone, "k")
	require.ErrorIs(t, err, context.Canceled)

	require.Zero(t, b.timers.count())
	require.Equal(t, 1, b.pending(t, "invalidator-standard"))
}

// Batches are bounded in bytes as well as keys, so each one is one valid task.
func TestCoalesceBatchesStayWithinOnePayload(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: time.Millisecond}, false)
	g := b.holdFlushes(t)
	lead, _ := b.lead(t, g, b.client, "lead")
	co := b.client.co
	class, err := b.client.b.policy.Class("standard")
	require.NoError(t, err)

	const n = 70 // 70 keys of 16 KiB exceed one 1 MiB payload
	var batches []*batch
	for i := range n {
		key := fmt.Sprintf("%05d", i) + strings.Repeat("v", tasks.MaxKeyBytes-5)
		size, ok := co.fits([]string{key})
		require.True(t, ok)
		bt, lone, err := co.join(b.client, class, []string{key}, size, b.base)
		require.NoError(t, err)
		require.False(t, lone, "a flush is in flight: the keys join its open batch")
		if len(batches) == 0 || batches[len(batches)-1] != bt {
			batches = append(batches, bt)
		}
	}
	require.Len(t, batches, 2)
	g.passAll()
	require.NoError(t, await(t, lead).err)
	require.NoError(t, b.client.Close()) // flushes the open one, if still open
	total := 0
	for _, bt := range batches {
		<-bt.done
		require.NoError(t, bt.err)
		dk, _ := b.keysOf(t, "invalidator-standard", bt.id)
		require.Equal(t, bt.keys, dk.Keys)
		total += len(dk.Keys)
	}
	require.Equal(t, n, total)
}

func TestCoalesceOverridesAreNotMerged(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: time.Millisecond}, false)
	g := b.holdFlushes(t)
	ctx := context.Background()
	plainC, retryC := b.client, b.client.With(MaxRetry(3))
	pricesC, timeoutC := b.client.With(Queue("prices")), b.client.With(Timeout(time.Second))
	// A flush in flight holds back only calls of its own overrides: each
	// lead goes out at once while the others are held.
	var leads []<-chan result
	for _, c := range []*Client{plainC, retryC, pricesC, timeoutC} {
		ch, _ := b.lead(t, g, c, "lead")
		leads = append(leads, ch)
	}
	require.Zero(t, b.timers.count())

	plain := call(ctx, plainC, "plain")
	retry1 := call(ctx, retryC, "retry1")
	retry2 := call(ctx, b.client.With(MaxRetry(3)), "retry2")
	prices := call(ctx, pricesC, "prices")
	timeout := call(ctx, timeoutC, "timeout")
	b.waitPending(t, 5)
	require.Equal(t, 4, b.timers.count())
	g.passAll()
	for _, ch := range leads {
		require.NoError(t, await(t, ch).err)
	}
	rPlain, rRetry1, rRetry2, rPrices, rTimeout := await(t, plain), await(t, retry1), await(t, retry2), await(t, prices), await(t, timeout)
	for _, r := range []result{rPlain, rRetry1, rRetry2, rPrices, rTimeout} {
		require.NoError(t, r.err)
		require.Len(t, r.ids, 1)
	}
	require.Equal(t, rRetry1.ids, rRetry2.ids)

	dk, ti := b.keysOf(t, "invalidator-standard", rPlain.ids[0])
	require.Equal(t, []string{"plain"}, dk.Keys)
	require.Equal(t, 5, ti.MaxRetry)
	dk, ti = b.keysOf(t, "invalidator-standard", rRetry1.ids[0])
	require.ElementsMatch(t, []string{"retry1", "retry2"}, dk.Keys)
	require.Equal(t, 3, ti.MaxRetry)
	dk, _ = b.keysOf(t, "prices", rPrices.ids[0])
	require.Equal(t, []string{"prices"}, dk.Keys)
	dk, ti = b.keysOf(t, "invalidator-standard", rTimeout.ids[0])
	require.Equal(t, []string{"timeout"}, dk.Keys)
	require.Equal(t, time.Second, ti.Timeout)
	require.Equal(t, 3+3, b.pending(t, "invalidator-standard")) // and 3 leads
}

func TestCoalesceCloseFlushesAndRefusesLaterCalls(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: time.Millisecond, MaxKeys: 3}, false)
	g := b.holdFlushes(t)
	ctx := context.Background()
	lead, held := b.lead(t, g, b.client, "lead")
	waiting := call(ctx, b.client, "pending")
	b.waitPending(t, 1)

	closed := make(chan error, 1)
	go func() { closed <- b.client.Close() }()
	// Close flushes the open batch at once, without waiting for the lead.
	h := g.next(t)
	require.Equal(t, []string{"pending"}, h.b.keys)
	close(h.release)
	r := await(t, waiting)
	require.NoError(t, r.err)
	dk, _ := b.keysOf(t, "invalidator-standard", r.ids[0])
	require.Equal(t, []string{"pending"}, dk.Keys)
	require.True(t, b.timers.stopped(0))
	require.Zero(t, b.client.co.pendingCalls())
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v before the flush in flight was done", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(held.release)
	require.NoError(t, await(t, lead).err)
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("Close did not return")
	}

	_, err := b.client.DeleteKeys(ctx, "late")
	require.ErrorIs(t, err, ErrClosed)
	_, err = b.client.With(MaxRetry(1)).DeleteKeys(ctx, "late", "and", "large", "call")
	require.ErrorIs(t, err, ErrClosed)

	// A window that ends after Close finds its batch flushed already.
	b.timers.fire(0)
	require.NoError(t, b.client.Close())
	require.Equal(t, 2, b.pending(t, "invalidator-standard"))
	g.requireNone(t)
}

func TestCoalesceEnqueueErrorReachesEveryCaller(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	opts, err := redis.ParseURL(db.URL)
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	b := coalesceSetupOn(t, db, rdb, CoalesceConfig{Window: time.Millisecond}, false)
	g := b.holdFlushes(t)
	lead, _ := b.lead(t, g, b.client, "lead")

	const n = 5
	chans := make([]<-chan result, n)
	for i := range n {
		chans[i] = call(context.Background(), b.client, fmt.Sprint("doomed", i))
	}
	b.waitPending(t, n)
	require.NoError(t, rdb.Close())
	g.passAll()
	// The lead was alone, so its error is a plain enqueue's.
	r := await(t, lead)
	require.ErrorContains(t, r.err, "client is closed")
	require.NotContains(t, r.err.Error(), "coalesced")
	for _, ch := range chans {
		r := await(t, ch)
		require.ErrorContains(t, r.err, "client is closed")
		require.ErrorContains(t, r.err, "coalesced: 5 calls, 5 keys in one task")
		require.Empty(t, r.ids)
	}
}

// A caller that gives up gets its context's error at once; its keys stay in
// the batch and are enqueued with it, and the others are unaffected.
func TestCoalesceCancelledCallerKeepsItsKeysInTheBatch(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: time.Millisecond}, false)
	g := b.holdFlushes(t)
	lead, held := b.lead(t, g, b.client, "lead")
	ctx, cancel := context.WithCancel(context.Background())
	quitter := call(ctx, b.client, "quitter")
	stayer := call(context.Background(), b.client, "stayer")
	b.waitPending(t, 2)

	cancel()
	r := await(t, quitter)
	require.ErrorIs(t, r.err, context.Canceled)
	requireWaiting(t, stayer)

	close(held.release)
	require.NoError(t, await(t, lead).err)
	g.passAll()
	r = await(t, stayer)
	require.NoError(t, r.err)
	dk, _ := b.keysOf(t, "invalidator-standard", r.ids[0])
	require.ElementsMatch(t, []string{"quitter", "stayer"}, dk.Keys)
}

// Many producers with real timers: whatever the batching, every caller's
// ID names a task holding its keys, and every key is enqueued exactly once.
func TestCoalesceHammer(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: time.Millisecond, MaxKeys: 7}, true)
	const producers, calls = 8, 40
	type sent struct {
		keys []string
		id   string
	}
	out := make([][]sent, producers)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range calls {
				keys := make([]string, 1+i%3)
				for j := range keys {
					keys[j] = fmt.Sprintf("p%d:c%d:k%d", p, i, j)
				}
				c := b.client
				if i%5 == 0 {
					c = c.With(MaxRetry(2))
				}
				ids, err := c.DeleteKeys(context.Background(), keys...)
				if !assertNoError(t, err) {
					return
				}
				out[p] = append(out[p], sent{keys, ids[0]})
			}
		})
	}
	wg.Wait()
	require.NoError(t, b.client.Close())

	all := map[string]int{}
	tasksByID := map[string][]string{}
	for _, s := range out {
		require.Len(t, s, calls)
		for _, c := range s {
			keys, ok := tasksByID[c.id]
			if !ok {
				dk, _ := b.keysOf(t, "invalidator-standard", c.id)
				keys = dk.Keys
				tasksByID[c.id] = keys
				require.LessOrEqual(t, len(keys), 7)
				for _, k := range keys {
					all[k]++
				}
			}
			require.Subset(t, keys, c.keys)
		}
	}
	wantKeys := 0
	for i := range calls {
		wantKeys += producers * (1 + i%3)
	}
	require.Len(t, all, wantKeys)
	for k, n := range all {
		require.Equal(t, 1, n, "key %q enqueued %d times", k, n)
	}
	require.Equal(t, len(tasksByID), b.pending(t, "invalidator-standard"))
	require.Less(t, len(tasksByID), producers*calls, "no call shared a task: coalescing did nothing")
}

// assertNoError reports err from a goroutine other than the test's.
func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Errorf("DeleteKeys: %v", err)
		return false
	}
	return true
}

// goroutineID returns the calling goroutine's number, from the first line
// of its stack trace ("goroutine 42 [running]:"). Tests only.
func goroutineID(t *testing.T) string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := strings.Fields(string(buf))
	require.GreaterOrEqual(t, len(f), 2)
	return f[1]
}

// A lone call is enqueued on its caller's goroutine, with its caller's ctx:
// a hand-off to a flush goroutine cost a lone call about 25 µs. The batches
// that gather behind it are enqueued by one goroutine, one after the other:
// under load, a goroutine per batch cost a spawn and a stack growth through
// go-redis on the critical path of every round trip.
func TestCoalesceLoneCallIsSentByItsCallerAndTheBatchesBehindByOneGoroutine(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: 2 * time.Millisecond}, false)
	type ctxKey struct{}
	type sent struct {
		goroutine string
		ctxValue  any
	}
	var mu sync.Mutex
	var sends []sent
	send := b.client.co.send
	b.client.co.send = func(ctx context.Context, bt *batch) (string, error) {
		mu.Lock()
		sends = append(sends, sent{goroutineID(t), ctx.Value(ctxKey{})})
		mu.Unlock()
		return send(ctx, bt)
	}
	g := b.holdFlushes(t)
	leadGoroutine := make(chan string, 1)
	lead := make(chan result, 1)
	go func() {
		leadGoroutine <- goroutineID(t)
		ids, err := b.client.DeleteKeys(context.WithValue(context.Background(), ctxKey{}, "the lead's"), "lead")
		lead <- result{ids, err}
	}()
	held := g.next(t)
	require.Equal(t, []string{"lead"}, held.b.keys)
	behind1 := call(context.Background(), b.client, "behind1")
	b.waitPending(t, 1)
	close(held.release)
	held = g.next(t)
	require.Equal(t, []string{"behind1"}, held.b.keys)
	behind2 := call(context.Background(), b.client, "behind2")
	b.waitPending(t, 1)
	close(held.release)
	close(g.next(t).release)
	for _, ch := range []<-chan result{lead, behind1, behind2} {
		require.NoError(t, await(t, ch).err)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, sends, 3)
	require.Equal(t, <-leadGoroutine, sends[0].goroutine, "a lone call is sent by its caller")
	require.Equal(t, "the lead's", sends[0].ctxValue, "with its caller's ctx")
	require.NotEqual(t, sends[0].goroutine, sends[1].goroutine, "the caller waits for no one else's batch")
	require.Equal(t, sends[1].goroutine, sends[2].goroutine, "the batches behind go one after the other on one goroutine")
	require.Nil(t, sends[1].ctxValue, "a shared batch runs on a context of its own")
}

// A lone call's enqueue runs on its caller's goroutine, so a panic there
// may be recovered by the caller (net/http recovers a handler's). The
// coalescer must come out of it as from a failed enqueue: the next call
// goes out at once, alone, and Close returns.
func TestCoalesceRecoveredPanicInALoneSendLeavesNoFlushInFlight(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: 2 * time.Millisecond}, false)
	send := b.client.co.send
	var panicked atomic.Bool
	b.client.co.send = func(ctx context.Context, bt *batch) (string, error) {
		if panicked.CompareAndSwap(false, true) {
			panic("a hook blew up")
		}
		return send(ctx, bt)
	}
	require.PanicsWithValue(t, "a hook blew up", func() { _, _ = b.client.DeleteKeys(context.Background(), "k0") },
		"the panic goes on to the caller")
	co := b.client.co
	co.mu.Lock()
	left := co.inFlight[batchKey{}].all
	co.mu.Unlock()
	if left != 0 {
		// Unstick it, so that the cleanup's Close returns, and fail.
		co.mu.Lock()
		delete(co.inFlight, batchKey{})
		co.mu.Unlock()
		for range left {
			co.flushes.Done()
		}
		t.Fatalf("%d flushes left in flight after a recovered panic in a lone send", left)
	}
	r := await(t, call(context.Background(), b.client, "k1"))
	require.NoError(t, r.err)
	require.Zero(t, b.timers.count(), "the next call went out alone, with no window")
	closed := make(chan error, 1)
	go func() { closed <- b.client.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("Close did not return after a recovered panic in a lone send")
	}
}

// A caller that a flush has just told, and that calls again at once, joins
// the batch that goes out next, not the one after it: the flush tells its
// callers before it takes the next batch, and yields in between. Its call
// pays no window. Before, callers told last split into two groups taking
// turns, and a task of 32 single-key producers carried about 14 keys.
func TestCoalesceCallerToldByAFlushJoinsTheNextBatch(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: 2 * time.Millisecond}, false)
	g := b.holdFlushes(t)
	lead, held := b.lead(t, g, b.client, "lead")
	behind := call(context.Background(), b.client, "behind")
	b.waitPending(t, 1)

	var again <-chan result
	var once sync.Once
	b.client.co.yield = func() {
		once.Do(func() { // the lead's flush
			// The lead's result is known before the next batch is taken.
			require.NoError(t, await(t, lead).err)
			again = call(context.Background(), b.client, "again")
			b.waitPending(t, 2)
		})
	}
	close(held.release)
	next := g.next(t)
	require.Equal(t, 2, next.b.calls, "the call made as the flush ended joined the batch that went next")
	require.ElementsMatch(t, []string{"behind", "again"}, next.b.keys)
	require.Equal(t, 1, b.timers.count(), "one window for the next batch, opened by its first call")
	require.True(t, b.timers.stopped(0), "and never fired: the batch went out right after the flush ahead of it")
	close(next.release)
	rb, ra := await(t, behind), await(t, again)
	require.NoError(t, rb.err)
	require.NoError(t, ra.err)
	require.Equal(t, rb.ids, ra.ids, "one task for both")
}

// A flush yields again while the batch behind it grows, and at most
// coalesceMaxYields times; once it stops growing, the batch goes out.
func TestCoalesceFlushYieldsWhileTheNextBatchGrows(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		joins      int // calls that join during the first yields, one per yield
		wantYields int
	}{
		{"nothing joins", 0, 1},
		{"two join", 2, 3},
		{"more than the cap", 10, coalesceMaxYields},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := coalesceSetup(t, CoalesceConfig{Window: 2 * time.Millisecond}, false)
			g := b.holdFlushes(t)
			lead, held := b.lead(t, g, b.client, "lead")
			behind := call(context.Background(), b.client, "behind")
			b.waitPending(t, 1)
			var yields atomic.Int32
			var joined []<-chan result
			b.client.co.yield = func() {
				if int(yields.Add(1)) <= tc.joins {
					joined = append(joined, call(context.Background(), b.client, fmt.Sprint("j", len(joined))))
					b.waitPending(t, 1+len(joined))
				}
			}
			close(held.release)
			next := g.next(t)
			require.EqualValues(t, tc.wantYields, yields.Load())
			require.Equal(t, 1+min(tc.joins, coalesceMaxYields), next.b.calls)
			b.client.co.yield = func() {}
			g.passAll()
			require.NoError(t, await(t, lead).err)
			require.NoError(t, await(t, behind).err)
			for _, ch := range joined {
				require.NoError(t, await(t, ch).err)
			}
		})
	}
}

// At a light load calls go side by side: a call that finds only lone
// flushes in flight, fewer than coalesceMaxLone, is sent at once instead of
// waiting a round trip for them. The next call gathers behind them, and its
// batch goes out when all of them are done.
func TestCoalesceCallsBehindLoneFlushesGoAtOnceUpToALimit(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: time.Millisecond}, false)
	b.client.co.maxLone = coalesceMaxLone // the production setting
	require.Greater(t, coalesceMaxLone, 1)
	g := b.holdFlushes(t)
	var lone []<-chan result
	var held []heldFlush
	for i := range coalesceMaxLone {
		key := fmt.Sprint("lone", i)
		lone = append(lone, call(context.Background(), b.client, key))
		h := g.next(t) // while those before it are still held: it did not wait
		require.Equal(t, []string{key}, h.b.keys)
		held = append(held, h)
	}
	behind := call(context.Background(), b.client, "behind", "behind\xff")
	b.waitPending(t, 1)
	require.Equal(t, 1, b.timers.count(), "the call after the limit opens a batch, with its window")
	for i, h := range held[:len(held)-1] {
		close(h.release)
		require.NoError(t, await(t, lone[i]).err)
	}
	g.requireNone(t) // one lone flush is still in flight: the batch waits for it
	requireWaiting(t, behind)
	close(held[len(held)-1].release)
	require.NoError(t, await(t, lone[len(lone)-1]).err)
	h := g.next(t) // no window was fired
	require.Equal(t, []string{"behind", "behind\xff"}, h.b.keys)
	close(h.release)
	require.NoError(t, await(t, behind).err)
	require.Equal(t, coalesceMaxLone+1, b.pending(t, "invalidator-standard"), "a task per lone call, and the batch")
	require.Zero(t, b.client.co.pendingCalls())
}

// Behind a batch of several callers (a loaded producer) no call goes alone:
// it gathers in the next batch, so batches keep their size under load.
func TestCoalesceNoLoneCallGoesBehindABatch(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: time.Millisecond}, false)
	g := b.holdFlushes(t)
	lead, heldLead := b.lead(t, g, b.client, "lead") // maxLone 1: x1 and x2 gather behind it
	x := call(context.Background(), b.client, "x1")
	y := call(context.Background(), b.client, "x2")
	b.waitPending(t, 2)
	b.client.co.mu.Lock()
	b.client.co.maxLone = coalesceMaxLone // the production setting from here on
	b.client.co.mu.Unlock()
	close(heldLead.release)
	require.NoError(t, await(t, lead).err)
	batch := g.next(t)
	require.Equal(t, 2, batch.b.calls)

	// The batch of x1 and x2 is in flight: a new call gathers, however
	// long that flush takes, until its window ends.
	z := call(context.Background(), b.client, "z")
	b.waitPending(t, 1)
	g.requireNone(t)
	requireWaiting(t, z)
	close(batch.release)
	require.NoError(t, await(t, x).err)
	require.NoError(t, await(t, y).err)
	h := g.next(t)
	require.Equal(t, []string{"z"}, h.b.keys)
	close(h.release)
	require.NoError(t, await(t, z).err)
}

// Calls go alone beside other lone flushes only as often as the lane's
// rate allows; past it they gather, as under load. Without the bound,
// producers calling in a loop made a task of every call.
func TestCoalesceLoneLaneIsRateBound(t *testing.T) {
	t.Parallel()
	b := coalesceSetup(t, CoalesceConfig{Window: time.Millisecond}, false)
	b.client.co.mu.Lock()
	b.client.co.maxLone = coalesceMaxLone
	b.client.co.lane = rate.NewLimiter(0, 1) // one call beside, never another
	b.client.co.mu.Unlock()
	g := b.holdFlushes(t)
	first, heldFirst := b.lead(t, g, b.client, "first")
	second := call(context.Background(), b.client, "second")
	heldSecond := g.next(t)
	require.Equal(t, []string{"second"}, heldSecond.b.keys, "the lane's one call goes at once")
	third := call(context.Background(), b.client, "third")
	b.waitPending(t, 1) // two lone flushes, fewer than coalesceMaxLone, yet it gathers
	g.requireNone(t)
	close(heldFirst.release)
	close(heldSecond.release)
	require.NoError(t, await(t, first).err)
	require.NoError(t, await(t, second).err)
	h := g.next(t)
	require.Equal(t, []string{"third"}, h.b.keys)
	close(h.release)
	require.NoError(t, await(t, third).err)
}
