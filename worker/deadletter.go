package worker

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/internal/wake"
	"github.com/invalidator/invalidator/tasks"
)

// The dead-letter record.
//
// asynq's archive is the dead letter the dashboard shows, but asynq trims it
// without a trace: every archive operation deletes the oldest tasks beyond
// AsynqArchiveCap per queue and those archived more than AsynqArchiveMaxAge
// ago. A trimmed invalidation is a lost one, so every task that goes to the
// archive is also kept in a record of invalidator's own, which nothing
// trims; only `invalidator dead retry` and `dead purge` take tasks out.
//
// Keys, in the queue Redis:
//
//	invalidator:dead:{<queue>}          hash: task ID -> the task as JSON (deadEntry)
//	invalidator:dead:{<queue>}:sweeper  string: token of the worker sweeping the queue's archive, with a TTL
//
// The {<queue>} hash tag is the one asynq's own keys of the queue carry
// (asynq:{<queue>}:...), so a queue's record, its sweeper lock and asynq's
// archive are one slot on a Redis Cluster, and one Lua script can read the
// archive and the record together.
//
// Who writes the record:
//   - the worker, before asynq archives a task: ProcessTask for the errors
//     it returns (poison, or the last retry failed), the ErrorHandler for
//     the failures asynq finds itself (timeout, panic, lost lease);
//   - the sweep, for archived tasks the record lacks: archived by an
//     operator (Inspector, dashboard), by asynq's recoverer (lease expired
//     on the last attempt), or after the worker's write failed. One worker
//     of the fleet sweeps each queue every Config.DeadLetterSweep.
//
// Who removes from it: `dead retry` (after putting the task back, so a crash
// in between repeats the retry rather than loses the task), `dead purge`,
// and the worker when a task whose retries were exhausted succeeds (it was
// put back from the archive by other means, such as the dashboard).
//
// asynq internals this depends on (asynqkeys.go): the archive, which the
// sweep reads newest first; task states, which the CLI reads for many tasks
// in one pipeline; the pending list, on which the CLI puts archived tasks
// back in batches as asynq's RunAllArchivedTasks does, but for chosen IDs
// (RunArchivedTasks); and the cap of 9,999 tasks and 90 days
// (AsynqArchiveCap, AsynqArchiveMaxAge), for the metrics and alert; the
// dead-letter process test fails if the cap changes.

const (
	// AsynqArchiveCap is how many archived tasks asynq keeps per queue:
	// archiving one more deletes the oldest. asynq's maxArchiveSize is
	// 10,000, and its trim (ZRANGE archived 0 -10000) keeps one fewer.
	AsynqArchiveCap = 9999
	// AsynqArchiveMaxAge is how long asynq keeps an archived task
	// (archivedExpirationInDays): the next archive operation deletes older
	// ones.
	AsynqArchiveMaxAge = 90 * 24 * time.Hour

	// DefaultDeadLetterSweep is how often one worker of the fleet copies
	// tasks archived outside the worker into the record.
	DefaultDeadLetterSweep = 2 * time.Second

	// ReasonArchivedByOperator is the reason of a task archived with no
	// failure recorded: an operator archived it before it ever failed.
	ReasonArchivedByOperator = "archived by an operator (no failure recorded)"

	// Sources of a record entry (DeadTask.Source).
	DeadSourceWorker = "worker" // written by the worker before asynq archived the task
	DeadSourceSweep  = "sweep"  // copied from asynq's archive

	// deadRecordTimeout bounds one record write of the worker; the write
	// runs even when the task's context has ended (a timeout), since the
	// archive that follows does too.
	deadRecordTimeout = 5 * time.Second
	// sweepOverlap is how far before the newest archive time it has seen a
	// sweep looks again: archive times come from the clocks of the hosts
	// that archived, so a task may arrive with a time a little in the past.
	sweepOverlap = 30 * time.Second
	// fullSweepEvery is how often a sweep reads the whole archive, for
	// tasks archived by a host whose clock is further behind than that.
	fullSweepEvery = 5 * time.Minute
	// deadBatch is the number of record entries one command or script
	// handles.
	deadBatch = 500

	// RequeueParallelism is how many retries or re-enqueues a caller of
	// the functions below should have in flight: enough to hide round
	// trips, few enough not to crowd the queue Redis.
	RequeueParallelism = 16
)

func deadRecordKey(queue string) string  { return "invalidator:dead:{" + queue + "}" }
func deadSweeperKey(queue string) string { return "invalidator:dead:{" + queue + "}:sweeper" }

// DeadTask is one dead-lettered task as the record keeps it: enough to run
// it again after asynq has trimmed it.
type DeadTask struct {
	ID      string
	Queue   string
	Kind    string // the asynq task type
	Payload []byte
	Headers map[string]string
	// Reason is the last error; ReasonArchivedByOperator when there was none.
	Reason string
	// FailedAt is when the last attempt failed; zero when none did.
	FailedAt time.Time
	// ArchivedAt is when the task went to the dead letter: when the worker
	// recorded it, or asynq's archive time for a task the sweep copied.
	ArchivedAt time.Time
	Retried    int
	MaxRetry   int
	// Timeout of one attempt. A task the worker recorded has its class's
	// timeout (an enqueue --timeout override is not visible to it); 0 is
	// asynq's default.
	Timeout time.Duration
	// Source is DeadSourceWorker or DeadSourceSweep.
	Source string
	// Undecodable is set, and the fields above but ID and Queue are empty,
	// when the record entry could not be decoded (a newer build wrote it).
	Undecodable error

	raw string // the entry as read; DropDeadTasks deletes only this version
}

// deadEntry is the JSON of a record entry. Payload is []byte, which JSON
// carries as base64, so binary keys round-trip exactly.
type deadEntry struct {
	V          int               `json:"v"`
	Kind       string            `json:"kind"`
	Payload    []byte            `json:"payload"`
	Headers    map[string]string `json:"headers,omitempty"`
	Reason     string            `json:"reason"`
	FailedAt   int64             `json:"failed_at_ms,omitempty"`
	ArchivedAt int64             `json:"archived_at_ms,omitempty"`
	Retried    int               `json:"retried"`
	MaxRetry   int               `json:"max_retry"`
	TimeoutMS  int64             `json:"timeout_ms,omitempty"`
	Source     string            `json:"source"`
}

const deadEntryVersion = 1

func unixMilliOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func timeOrZero(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func (t DeadTask) encode() (string, error) {
	b, err := json.Marshal(deadEntry{
		V: deadEntryVersion, Kind: t.Kind, Payload: t.Payload, Headers: t.Headers, Reason: t.Reason,
		FailedAt: unixMilliOrZero(t.FailedAt), ArchivedAt: unixMilliOrZero(t.ArchivedAt),
		Retried: t.Retried, MaxRetry: t.MaxRetry, TimeoutMS: t.Timeout.Milliseconds(), Source: t.Source,
	})
	return string(b), err
}

func decodeDeadTask(queue, id, raw string) DeadTask {
	t := DeadTask{ID: id, Queue: queue, raw: raw}
	var e deadEntry
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		t.Undecodable = fmt.Errorf("dead-letter record entry of task %s: %w", id, err)
		return t
	}
	if e.V != deadEntryVersion {
		t.Undecodable = fmt.Errorf("dead-letter record entry of task %s has format version %d, this build reads %d: use a newer invalidator", id, e.V, deadEntryVersion)
		return t
	}
	t.Kind, t.Payload, t.Headers, t.Reason = e.Kind, e.Payload, e.Headers, e.Reason
	t.FailedAt, t.ArchivedAt = timeOrZero(e.FailedAt), timeOrZero(e.ArchivedAt)
	t.Retried, t.MaxRetry, t.Timeout, t.Source = e.Retried, e.MaxRetry, time.Duration(e.TimeoutMS)*time.Millisecond, e.Source
	return t
}

// deadTaskFromInfo is a record entry for a task the sweep found in asynq's
// archive, archived at archivedAt.
func deadTaskFromInfo(ti *asynq.TaskInfo, archivedAt time.Time) DeadTask {
	reason := ti.LastErr
	if reason == "" {
		reason = ReasonArchivedByOperator
	}
	return DeadTask{
		ID: ti.ID, Queue: ti.Queue, Kind: ti.Type, Payload: ti.Payload, Headers: ti.Headers, Reason: reason,
		FailedAt: ti.LastFailedAt, ArchivedAt: archivedAt, Retried: ti.Retried, MaxRetry: ti.MaxRetry,
		Timeout: ti.Timeout, Source: DeadSourceSweep,
	}
}

// writeDeadTask stores t in its queue's record, replacing an older entry
// of the same task.
func writeDeadTask(ctx context.Context, rdb redis.UniversalClient, t DeadTask) error {
	raw, err := t.encode()
	if err != nil {
		return fmt.Errorf("encode dead-letter record entry of task %s: %w", t.ID, err)
	}
	if err := rdb.HSet(ctx, deadRecordKey(t.Queue), t.ID, raw).Err(); err != nil {
		return fmt.Errorf("write dead-letter record of queue %q: %w", t.Queue, err)
	}
	return nil
}

// ReadDeadLetter returns every task in the queue's record, in no
// particular order.
func ReadDeadLetter(ctx context.Context, rdb redis.UniversalClient, queue string) ([]DeadTask, error) {
	var out []DeadTask
	var cursor uint64
	for {
		kv, next, err := rdb.HScan(ctx, deadRecordKey(queue), cursor, "", deadBatch).Result()
		if err != nil {
			return nil, fmt.Errorf("read dead-letter record of queue %q: %w", queue, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, decodeDeadTask(queue, kv[i], kv[i+1]))
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	// HSCAN may return an entry twice.
	slices.SortFunc(out, func(a, b DeadTask) int { return strings.Compare(a.ID, b.ID) })
	return slices.CompactFunc(out, func(a, b DeadTask) bool { return a.ID == b.ID }), nil
}

// ReadDeadTask returns the queue's record entry of one task; false when
// the record has none.
func ReadDeadTask(ctx context.Context, rdb redis.UniversalClient, queue, id string) (DeadTask, bool, error) {
	raw, err := rdb.HGet(ctx, deadRecordKey(queue), id).Result()
	if errors.Is(err, redis.Nil) {
		return DeadTask{}, false, nil
	}
	if err != nil {
		return DeadTask{}, false, fmt.Errorf("read dead-letter record of queue %q: %w", queue, err)
	}
	return decodeDeadTask(queue, id, raw), true, nil
}

// DeadLetterSize is the number of tasks in the queue's record.
func DeadLetterSize(ctx context.Context, rdb redis.UniversalClient, queue string) (int64, error) {
	n, err := rdb.HLen(ctx, deadRecordKey(queue)).Result()
	if err != nil {
		return 0, fmt.Errorf("size of the dead-letter record of queue %q: %w", queue, err)
	}
	return n, nil
}

// dropScript deletes record entries that are still the version the caller
// read: a task that died again meanwhile was recorded anew, and that newer
// entry must stay.
var dropScript = redis.NewScript(`
-- KEYS[1] -> invalidator:dead:{<queue>} (the record)
-- ARGV[2i-1] -> a task ID; ARGV[2i] -> SHA1 hex of its entry as the caller read it
-- Output: the number of entries deleted
local n = 0
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if cur and redis.sha1hex(cur) == ARGV[i + 1] then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n
`)

// DropDeadTasks removes tasks read with ReadDeadLetter or ReadDeadTask
// from their queue's record, each only if its entry is unchanged since it
// was read. It returns how many it removed.
func DropDeadTasks(ctx context.Context, rdb redis.UniversalClient, queue string, ts []DeadTask) (int, error) {
	total := 0
	for chunk := range slices.Chunk(ts, deadBatch) {
		args := make([]any, 0, 2*len(chunk))
		for _, t := range chunk {
			sum := sha1.Sum([]byte(t.raw))
			args = append(args, t.ID, hex.EncodeToString(sum[:]))
		}
		n, err := dropScript.Run(ctx, rdb, []string{deadRecordKey(queue)}, args...).Int()
		if err != nil {
			return total, fmt.Errorf("drop from the dead-letter record of queue %q: %w", queue, err)
		}
		total += n
	}
	return total, nil
}

// PurgeDeadTasks removes the tasks with these IDs from the queue's record,
// whatever their entry holds, and returns how many it removed.
func PurgeDeadTasks(ctx context.Context, rdb redis.UniversalClient, queue string, ids []string) (int, error) {
	total := 0
	for chunk := range slices.Chunk(ids, deadBatch) {
		n, err := rdb.HDel(ctx, deadRecordKey(queue), chunk...).Result()
		if err != nil {
			return total, fmt.Errorf("purge from the dead-letter record of queue %q: %w", queue, err)
		}
		total += int(n)
	}
	return total, nil
}

// AsynqTaskStates returns asynq's state of each task ("pending", "active",
// "scheduled", "retry", "archived", "completed", "aggregating"), or "" for
// a task asynq does not have, in one pipeline per batch. It reads asynq's
// task hashes directly, since the Inspector asks one task per round trip.
func AsynqTaskStates(ctx context.Context, rdb redis.UniversalClient, queue string, ids []string) ([]string, error) {
	states := make([]string, 0, len(ids))
	for chunk := range slices.Chunk(ids, deadBatch) {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(chunk))
		for i, id := range chunk {
			cmds[i] = pipe.HGet(ctx, asynqTaskKey(queue, id), "state")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read task states of queue %q: %w", queue, err)
		}
		for _, c := range cmds {
			s, err := c.Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return nil, fmt.Errorf("read task states of queue %q: %w", queue, err)
			}
			states = append(states, s)
		}
	}
	return states, nil
}

// runArchivedScript is asynq's own way of running archived tasks
// (runAllCmd in asynq's internal/rdb), for the given IDs only, so that a
// retry of thousands of tasks is a few round trips and still knows which
// tasks it put back.
var runArchivedScript = redis.NewScript(`
-- KEYS[1] -> asynq:{<queue>}:archived; KEYS[2] -> asynq:{<queue>}:pending
-- ARGV[1] -> task key prefix, asynq:{<queue>}:t:; ARGV[2..] -> task IDs
-- Output: per ID, 1 if it was archived and is pending now, 0 if asynq's
--         archive does not hold it (trimmed, or taken out meanwhile)
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('LPUSH', KEYS[2], id)
    redis.call('HSET', ARGV[1] .. id, 'state', 'pending')
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
`)

// RunArchivedTasks puts the archived tasks with these IDs back on their
// queue, as asynq's Inspector.RunTask does, in batches; it reports for
// each ID whether it did (false: asynq's archive does not hold it). The
// tasks get one more attempt: asynq keeps their retry count. Idle workers
// are woken for them before it returns.
func RunArchivedTasks(ctx context.Context, rdb redis.UniversalClient, queue string, ids []string) (done []bool, err error) {
	done = make([]bool, 0, len(ids))
	defer func() { wakeFor(ctx, rdb, queue, done) }()
	keys := []string{asynqArchivedKey(queue), asynqPendingKey(queue)}
	for chunk := range slices.Chunk(ids, deadBatch) {
		args := make([]any, 0, len(chunk)+1)
		args = append(args, asynqTaskKey(queue, ""))
		for _, id := range chunk {
			args = append(args, id)
		}
		res, err := runArchivedScript.Run(ctx, rdb, keys, args...).Int64Slice()
		if err != nil || len(res) != len(chunk) {
			return done, fmt.Errorf("run archived tasks of queue %q: %w", queue, errors.Join(err, errors.New("malformed reply")))
		}
		for _, r := range res {
			done = append(done, r == 1)
		}
	}
	return done, nil
}

// wakeFor wakes idle workers for the tasks put back (done[i] true). It
// waits for the push, since the CLI exits next; a failed push only leaves
// the tasks to the workers' safety poll.
func wakeFor(ctx context.Context, rdb redis.UniversalClient, queue string, done []bool) {
	n := 0
	for _, d := range done {
		if d {
			n++
		}
	}
	if n > 0 {
		_ = wake.Push(ctx, rdb, map[string]int{queue: n})
	}
}

// RequeueDeadTask enqueues a task of the record again on its queue, under
// its own task ID, and wakes an idle worker for it (through aq's Redis,
// rdb): a family delete then resumes from its checkpoint
// (invalidator:scan:{<id>}, or the one its continuation header names), and
// `dead retry --force` marks that checkpoint. The ID never coalesces
// invalidations: asynq refuses it (asynq.ErrTaskIDConflict) only while the
// very same task is still in asynq, which the caller then handles. The
// task gets its recorded retry budget afresh.
func RequeueDeadTask(ctx context.Context, aq *asynq.Client, rdb redis.UniversalClient, t DeadTask) error {
	if t.Undecodable != nil {
		return fmt.Errorf("cannot re-enqueue: %w", t.Undecodable)
	}
	task, opts := tasks.Envelope{
		Kind: t.Kind, Payload: t.Payload, Queue: t.Queue, MaxRetry: t.MaxRetry, Timeout: t.Timeout, Headers: t.Headers, ID: t.ID,
	}.Asynq()
	if _, err := aq.EnqueueContext(ctx, task, opts...); err != nil {
		return fmt.Errorf("re-enqueue task %s on queue %q: %w", t.ID, t.Queue, err)
	}
	wakeFor(ctx, rdb, t.Queue, []bool{true})
	return nil
}

// recordedError marks an error whose task ProcessTask already wrote to the
// record, so the ErrorHandler does not write it again. Its message is the
// cause's, which asynq stores as the task's last error.
type recordedError struct{ cause error }

func (e *recordedError) Error() string { return e.cause.Error() }
func (e *recordedError) Unwrap() error { return e.cause }

// recordDead writes a task that asynq is about to archive to the record.
// A failure is logged at error level and counted: the task still reaches
// asynq's archive, and the sweep copies it from there.
func (w *Worker) recordDead(ctx context.Context, at *asynq.Task, cause error, log *slog.Logger) error {
	id, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	now := w.now()
	t := DeadTask{
		ID: id, Queue: queue, Kind: at.Type(), Payload: at.Payload(), Headers: at.Headers(), Reason: cause.Error(),
		FailedAt: now, ArchivedAt: now, Retried: retried, MaxRetry: maxRetry,
		Timeout: w.state.Load().queueClass(queue).Timeout, Source: DeadSourceWorker,
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadRecordTimeout)
	defer cancel()
	if err := writeDeadTask(wctx, w.cfg.Queue, t); err != nil {
		w.metrics.deadRecordFailed(queue)
		log.Error("could not record the task in the dead-letter record; the sweep will copy it from asynq's archive, "+
			"which asynq trims beyond 9,999 tasks", "err", err)
		return err
	}
	w.metrics.deadRecorded(queue, DeadSourceWorker)
	return nil
}

// forgetDead drops the record entry of a task that succeeded after its
// retries were exhausted: it was put back from the archive by other means
// than `dead retry` (the dashboard), and is no longer dead.
func (w *Worker) forgetDead(ctx context.Context, queue, id string, log *slog.Logger) {
	if err := w.cfg.Queue.HDel(ctx, deadRecordKey(queue), id).Err(); err != nil {
		// The entry stays: a later `dead retry` replays an invalidation
		// that already ran, which is harmless.
		log.Warn("could not drop a task that succeeded from the dead-letter record", "err", err)
	}
}

// The sweep: copies tasks that reached asynq's archive without passing the
// worker's record into the record.

// sweepScanScript finds the archived tasks the record lacks.
var sweepScanScript = redis.NewScript(`
-- KEYS[1] -> asynq:{<queue>}:archived (task IDs scored by archive time, Unix seconds)
-- KEYS[2] -> invalidator:dead:{<queue>} (the record)
-- ARGV[1] -> the lowest archive time to look at ("-inf": the whole archive)
-- Output: {newest, id, time, id, time, ...}: the newest archive time seen
--         ("" if none), then the archived IDs the record lacks, newest first
local entries = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', ARGV[1], 'WITHSCORES')
local out = {''}
if #entries > 0 then
  out[1] = entries[2]
end
for i = 1, #entries, 2 do
  if redis.call('HEXISTS', KEYS[2], entries[i]) == 0 then
    table.insert(out, entries[i])
    table.insert(out, entries[i + 1])
  end
end
return out
`)

// sweepCopyScript records one archived task unless the record has it or
// it left the archive meanwhile (`dead retry` put it back).
var sweepCopyScript = redis.NewScript(`
-- KEYS[1] -> asynq:{<queue>}:archived; KEYS[2] -> invalidator:dead:{<queue>}
-- ARGV[1] -> task ID; ARGV[2] -> its record entry
-- Output: 1 if written, 0 if not
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
return redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
`)

// sweepLockScript takes or keeps the queue's sweeper lock.
var sweepLockScript = redis.NewScript(`
-- KEYS[1] -> invalidator:dead:{<queue>}:sweeper
-- ARGV[1] -> this worker's token; ARGV[2] -> TTL in milliseconds
-- Output: 1 if this worker holds the lock now (taken or renewed), 0 if another does
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// sweepUnlockScript releases the lock if this worker holds it.
var sweepUnlockScript = redis.NewScript(`
-- KEYS[1] -> invalidator:dead:{<queue>}:sweeper
-- ARGV[1] -> this worker's token
-- Output: 1 if released, 0 if another worker holds it (or nobody)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// deadSweeper is one worker's sweep. Its fields are used by the sweep's
// goroutine only.
type deadSweeper struct {
	w        *Worker
	log      *slog.Logger
	insp     *asynq.Inspector
	token    string
	interval time.Duration
	held     map[string]bool      // queues whose lock this worker holds
	nextAsk  map[string]time.Time // queue -> when to ask for another worker's lock again
	newest   map[string]float64   // queue -> newest archive time swept
	fullAt   map[string]time.Time // queue -> last sweep of the whole archive
}

// startDeadLetterSweep starts the sweep unless Config.DeadLetterSweep is
// negative; the returned function waits for it to stop after ctx ends.
func (w *Worker) startDeadLetterSweep(ctx context.Context) (wait func()) {
	if w.cfg.DeadLetterSweep < 0 {
		return func() {}
	}
	s := &deadSweeper{
		w: w, log: w.log.With("component", "dead-letter-sweep"), insp: asynq.NewInspectorFromRedisClient(w.cfg.Queue),
		token: rand.Text(), interval: w.cfg.DeadLetterSweep,
		held: map[string]bool{}, newest: map[string]float64{}, fullAt: map[string]time.Time{}, nextAsk: map[string]time.Time{},
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.run(ctx) })
	return wg.Wait
}

func (s *deadSweeper) run(ctx context.Context) {
	defer s.release()
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		for _, q := range slices.Sorted(maps.Keys(s.w.Queues())) {
			if !s.askDue(q, time.Now()) {
				continue
			}
			if err := s.sweep(ctx, q); err != nil && ctx.Err() == nil {
				s.log.Warn("dead-letter sweep failed; next try in "+s.interval.String(), "queue", q, "err", err)
			}
			s.asked(q, time.Now())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// askDue reports whether the sweep of queue runs this tick: always while
// this worker holds the queue's lock (it renews it at every sweep), and
// for a lock another worker holds only once its back-off has passed.
func (s *deadSweeper) askDue(queue string, now time.Time) bool {
	return s.held[queue] || !now.Before(s.nextAsk[queue])
}

// asked sets the back-off of a queue whose lock another worker holds: one
// to two lock TTLs. Asking at every tick made each idle worker of a fleet
// run a script per queue every DeadLetterSweep (at 64 workers and three
// queues, about 100 a second on the queue Redis, for a lock only one of
// them holds; at half a TTL to one, 30 a second). The holder renews it at
// each sweep; if it dies, the lock lapses within a TTL and another worker
// takes over within two more: the sweep only copies what asynq archived
// by itself into the dead-letter record, and asynq trims its archive only
// past 10,000 tasks or 90 days, so a sweep late by seconds loses nothing.
func (s *deadSweeper) asked(queue string, now time.Time) {
	if s.held[queue] {
		delete(s.nextAsk, queue)
		return
	}
	ttl := s.lockTTL()
	s.nextAsk[queue] = now.Add(ttl + mrand.N(ttl))
}

// lockTTL outlives a few missed sweeps, so a slow sweep keeps its lock,
// and lets another worker take over soon after this one dies.
func (s *deadSweeper) lockTTL() time.Duration { return max(5*s.interval, 5*time.Second) }

// sweep copies the queue's archived tasks that the record lacks, if this
// worker holds the queue's sweeper lock.
func (s *deadSweeper) sweep(ctx context.Context, queue string) error {
	ok, err := sweepLockScript.Run(ctx, s.w.cfg.Queue, []string{deadSweeperKey(queue)}, s.token, s.lockTTL().Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("take the sweeper lock: %w", err)
	}
	if ok == 0 {
		if s.held[queue] {
			// Another worker took over (this one stalled past the TTL): its
			// first sweep reads the whole archive, and so will ours if we
			// get the lock back.
			delete(s.newest, queue)
		}
		s.held[queue] = false
		return nil
	}
	s.held[queue] = true

	from := "-inf"
	newest, known := s.newest[queue]
	full := !known || time.Since(s.fullAt[queue]) >= fullSweepEvery
	if !full {
		from = strconv.FormatFloat(newest-sweepOverlap.Seconds(), 'f', -1, 64)
	}
	res, err := sweepScanScript.Run(ctx, s.w.cfg.Queue, []string{asynqArchivedKey(queue), deadRecordKey(queue)}, from).StringSlice()
	if err != nil || len(res)%2 != 1 {
		return fmt.Errorf("read asynq's archive: %w", errors.Join(err, errors.New("malformed reply")))
	}
	// Oldest first: those are the next asynq trims.
	copied := 0
	defer func() {
		if copied > 0 {
			s.log.Warn("recorded tasks that were archived without passing the worker (by an operator, or by asynq's recoverer after a lost lease)",
				"queue", queue, "tasks", copied)
		}
	}()
	for i := len(res) - 2; i >= 1; i -= 2 {
		score, _ := strconv.ParseFloat(res[i+1], 64)
		ok, err := s.copy(ctx, queue, res[i], time.Unix(int64(score), 0))
		if err != nil {
			return err // the same window is read again next time
		}
		if ok {
			copied++
		}
	}
	if res[0] != "" {
		top, _ := strconv.ParseFloat(res[0], 64)
		s.newest[queue] = max(top, newest)
	}
	if full {
		s.fullAt[queue] = time.Now()
	}
	return nil
}

// copy records one task found in asynq's archive; false if it did not
// need to (the task left the archive, or the record has it by now).
func (s *deadSweeper) copy(ctx context.Context, queue, id string, archivedAt time.Time) (bool, error) {
	ti, err := s.insp.GetTaskInfo(queue, id)
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return false, nil // left the archive since the scan: retried or purged
	}
	if err != nil {
		return false, fmt.Errorf("read archived task %s: %w", id, err)
	}
	if ti.State != asynq.TaskStateArchived {
		return false, nil
	}
	t := deadTaskFromInfo(ti, archivedAt)
	raw, err := t.encode()
	if err != nil {
		return false, fmt.Errorf("encode dead-letter record entry of task %s: %w", id, err)
	}
	n, err := sweepCopyScript.Run(ctx, s.w.cfg.Queue, []string{asynqArchivedKey(queue), deadRecordKey(queue)}, id, raw).Int()
	if err != nil {
		s.w.metrics.deadRecordFailed(queue)
		return false, fmt.Errorf("record archived task %s: %w", id, err)
	}
	if n == 0 {
		return false, nil
	}
	s.w.metrics.deadRecorded(queue, DeadSourceSweep)
	s.log.Debug("recorded an archived task", "queue", queue, "task_id", id, "kind", ti.Type, "reason", t.Reason)
	return true, nil
}

// release gives up the locks this worker holds, so another worker takes
// over at once rather than after the TTL.
func (s *deadSweeper) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for q, held := range s.held {
		if held {
			if err := sweepUnlockScript.Run(ctx, s.w.cfg.Queue, []string{deadSweeperKey(q)}, s.token).Err(); err != nil {
				s.log.Debug("release the sweeper lock", "queue", q, "err", err)
			}
		}
	}
}
