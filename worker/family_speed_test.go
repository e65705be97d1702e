package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/tasks"
)

// scanWatch is a go-redis hook that records a family scan: the SCAN pages
// in the order they were read, the keys of every UNLINK Redis confirmed,
// and, at the moment each checkpoint is sent, whether every key before its
// cursor was already confirmed gone. It can also fail one UNLINK pipeline.
type scanWatch struct {
	ck     string // checkpoint key to watch
	failAt int64  // fail the failAt-th pipeline of UNLINKs; 0: never

	unlinkPipes atomic.Int64

	mu         sync.Mutex
	pages      []scanPage
	starts     []uint64 // cursor each page was read from
	gone       map[string]bool
	saves      int
	violations []string
}

var errUnlinkFailed = errors.New("injected UNLINK failure (test)")

func newScanWatch(ck string) *scanWatch { return &scanWatch{ck: ck, gone: map[string]bool{}} }

func (h *scanWatch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h *scanWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		// Checkpoint saves run saveScript: EVALSHA sha 1 ck mode node value
		// scanned deleted ttl field-names...; it is told apart from the
		// other scripts by its hash (or, on EVAL, its source).
		if n, a := cmd.Name(), cmd.Args(); (n == "evalsha" && a[1] == saveScript.Hash() || n == "eval" && a[1] == saveLua) && a[3] == h.ck {
			h.checkSave(cmd.Args()[6].(string))
		}
		err := next(ctx, cmd)
		if sc, ok := cmd.(*redis.ScanCmd); ok && err == nil {
			keys, cur := sc.Val()
			start, _ := sc.Args()[1].(uint64)
			h.mu.Lock()
			h.pages = append(h.pages, scanPage{keys: keys, next: cur})
			h.starts = append(h.starts, start)
			h.mu.Unlock()
		}
		return err
	}
}

func (h *scanWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var unlinks, rest []redis.Cmder
		for _, c := range cmds {
			switch c.Name() {
			case "unlink":
				unlinks = append(unlinks, c)
			case "hset":
				// Cursor saves name a node; "_..." fields are totals.
				if c.Args()[1] == h.ck && !strings.HasPrefix(c.Args()[2].(string), "_") {
					h.checkSave(c.Args()[3].(string))
				}
			}
		}
		if len(unlinks) > 0 && h.unlinkPipes.Add(1) == h.failAt {
			// The UNLINKs never reach Redis; the rest of the pipeline does.
			for _, c := range cmds {
				if c.Name() == "unlink" {
					c.SetErr(errUnlinkFailed)
				} else {
					rest = append(rest, c)
				}
			}
			if len(rest) > 0 {
				_ = next(ctx, rest)
			}
			return errUnlinkFailed
		}
		err := next(ctx, cmds)
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range unlinks {
			if c.Err() != nil {
				continue
			}
			for _, k := range c.Args()[1:] {
				h.gone[k.(string)] = true
			}
		}
		return err
	}
}

// checkSave records a violation if a checkpoint with value v is about to be
// saved while a key some page before its cursor returned still exists.
func (h *scanWatch) checkSave(v string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cp, ok := parseCheckpoint(v)
	if !ok {
		h.violations = append(h.violations, "unparsable checkpoint "+v)
		return
	}
	h.saves++
	// The pages the cursor has passed: up to the one that ends at it.
	upto := len(h.pages)
	if !cp.done {
		upto = slices.IndexFunc(h.pages, func(p scanPage) bool { return p.next == cp.cursor }) + 1
		if upto == 0 {
			h.violations = append(h.violations, fmt.Sprintf("checkpoint %d was never a SCAN cursor", cp.cursor))
			return
		}
	}
	for i, p := range h.pages[:upto] {
		for _, k := range p.keys {
			if !h.gone[k] {
				h.violations = append(h.violations, fmt.Sprintf("checkpoint %s saved before key %q of page %d (from cursor %d) was deleted", v, k, i, h.starts[i]))
				return
			}
		}
	}
}

func familyTask(shop string) tasks.DeleteFamily {
	return tasks.DeleteFamily{Family: "item", Params: map[string]string{"shop": shop}}
}

// With a checkpoint after every page, no saved cursor is ever ahead of the
// confirmed deletes, although the scan runs a page ahead of them.
func TestFamilyCheckpointNeverAheadOfDeletes(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	family := fill(t, rdb, 3000, "item:s1:%d")
	others := fill(t, rdb, 3000, "item:s10:%d")
	w, err := New(Config{Queue: rdb, Policy: familyPolicy(t), ScanCount: 40, DeleteChunk: 7, Logger: quiet()})
	require.NoError(t, err)
	w.cfg.checkpointInterval = time.Nanosecond
	watch := newScanWatch(checkpointKey("every-page"))
	rdb.AddHook(watch)

	require.NoError(t, w.applyDeleteFamily(ctx, w.state.Load(), familyTask("s1"), asynq.NewTask(tasks.KindDeleteFamily, nil), "every-page", w.log))
	require.Zero(t, CountExisting(t, rdb, family...))
	require.Equal(t, len(others), CountExisting(t, rdb, others...))
	watch.mu.Lock()
	defer watch.mu.Unlock()
	require.Empty(t, watch.violations)
	require.Greater(t, watch.saves, 20, "the scan was meant to save many checkpoints")
}

// An UNLINK that fails mid-scan, while the SCAN of the next page succeeds,
// leaves a checkpoint behind the failed page: the retry deletes every key.
func TestFamilyFailedUnlinkKeepsCheckpointBehind(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := context.Background()
	// As many other keys as family keys keep Redis from shrinking its table
	// as the family goes, so a cursor ahead of the failed page would skip it.
	family := fill(t, rdb, 2000, "item:s1:%d")
	others := fill(t, rdb, 2000, "item:s10:%d")
	w, err := New(Config{Queue: rdb, Policy: familyPolicy(t), ScanCount: 50, Logger: quiet()})
	require.NoError(t, err)
	watch := newScanWatch(checkpointKey("fails"))
	watch.failAt = 5
	rdb.AddHook(watch)

	err = w.applyDeleteFamily(ctx, w.state.Load(), familyTask("s1"), asynq.NewTask(tasks.KindDeleteFamily, nil), "fails", w.log)
	require.ErrorIs(t, err, errUnlinkFailed)
	left := CountExisting(t, rdb, family...)
	require.Positive(t, left)
	require.Less(t, left, len(family), "the scan was meant to fail mid-way")
	cp, err := w.loadCheckpoint(ctx, checkpointKey("fails"), "standalone")
	require.NoError(t, err)
	require.False(t, cp.done)
	require.NotZero(t, cp.cursor, "the progress before the failure was meant to be saved")
	watch.mu.Lock()
	require.Empty(t, watch.violations)
	watch.mu.Unlock()

	// The retry resumes from the checkpoint and must find the failed page.
	require.NoError(t, w.applyDeleteFamily(ctx, w.state.Load(), familyTask("s1"), asynq.NewTask(tasks.KindDeleteFamily, nil), "fails", w.log))
	require.Zero(t, CountExisting(t, rdb, family...), "the checkpoint ran ahead of the deletes")
	require.Equal(t, len(others), CountExisting(t, rdb, others...))
	requireFinished(t, rdb, "fails")
}

// The scan running ahead of the deletes removes exactly the family, on a
// standalone Redis and on each master of a cluster, with pages split into
// many UNLINKs.
func TestFamilyOverlappedScanDeletesExactlyTheFamily(t *testing.T) {
	t.Parallel()
	for name, cache := range map[string]func(t *testing.T) redis.UniversalClient{
		"standalone": func(t *testing.T) redis.UniversalClient { return redistest.Client(t) },
		"cluster":    func(t *testing.T) redis.UniversalClient { return redistest.Cluster(t) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			queue, rdb := redistest.Client(t), cache(t)
			ctx := context.Background()
			shop := strings.ReplaceAll(redistest.Prefix(t), ":", "_")
			family := fill(t, rdb, 4000, "item:"+shop+":%d")
			others := fill(t, rdb, 1000, "item:"+shop+"0:%d")
			others = append(others, fill(t, rdb, 1000, "item:x"+shop+":%d")...)
			others = append(others, fill(t, rdb, 10, "item:"+shop+"%d")...)
			w, err := New(Config{Queue: queue, Cache: rdb, Policy: familyPolicy(t), ScanCount: 33, DeleteChunk: 7, Logger: quiet()})
			require.NoError(t, err)
			require.NoError(t, w.applyDeleteFamily(ctx, w.state.Load(), familyTask(shop), asynq.NewTask(tasks.KindDeleteFamily, nil), "exact", w.log))
			require.Zero(t, CountExisting(t, rdb, family...))
			require.Equal(t, len(others), CountExisting(t, rdb, others...), "keys outside the family were deleted")
			requireFinished(t, queue, "exact")
		})
	}
}
