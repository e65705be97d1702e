package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Heartbeats and the rescuer (rescue.go) bring the tasks of a worker that
// died without a shutdown (kill -9, OOM kill, a lost host) back within
// seconds. asynq alone takes 60-120 s: its lease is fixed at 30 s and its
// recoverer runs once a minute and takes only leases expired 30 s ago.
//
// Every worker writes a heartbeat record every HeartbeatInterval: its
// identity, its queues and the tasks it is running. One worker of the fleet
// at a time holds the rescuer role; it compares the queues' active lists with
// the records and puts the tasks of workers whose record lapsed back to
// their queue. The fleet's keys share one hash slot ({fleet}), so each
// script below runs on one node of a Redis Cluster.
const (
	// fleetWorkersKey is a hash: worker id -> heartbeat record,
	// "<expiry ms> <seq> <JSON recordBody>", the expiry in Redis TIME.
	fleetWorkersKey = "invalidator:{fleet}:workers"
	// fleetRescuerKey holds the id of the worker with the rescuer role; it
	// expires unless its holder renews it with each heartbeat.
	fleetRescuerKey = "invalidator:{fleet}:rescuer"
	// fleetRescuedKey is a sorted set: rescued task id -> rescue time (Redis
	// ms). The worker that runs a rescued task again sees its id in a
	// heartbeat reply, logs the redelivery and removes it.
	fleetRescuedKey = "invalidator:{fleet}:rescued"

	// finishedMax caps the tasks a heartbeat claims as just finished.
	finishedMax = 256

	// rescuedReplyMax caps the rescued ids a heartbeat reply carries (the
	// newest), so a mass rescue does not make every heartbeat large.
	rescuedReplyMax = 1000
)

// fleetKeys are the KEYS of heartbeatScript and lookScript.
var fleetKeys = []string{fleetWorkersKey, fleetRescuerKey, fleetRescuedKey}

// heartbeatScript writes one worker's record, keeps or takes the rescuer
// role, forgets the rescued tasks the worker reports as run again, and
// returns the rescued tasks not yet seen running.
var heartbeatScript = redis.NewScript(`
-- KEYS[1] -> invalidator:{fleet}:workers (hash: worker id -> record)
-- KEYS[2] -> invalidator:{fleet}:rescuer (string: the rescuer's worker id)
-- KEYS[3] -> invalidator:{fleet}:rescued (zset: task id -> rescue time ms)
-- ARGV[1] -> worker id; ARGV[2] -> heartbeat timeout in ms (the life of
--            the record and of the rescuer role); ARGV[3] -> sequence
--            number of this heartbeat; ARGV[4] -> record JSON
-- ARGV[5] -> "1" to take the rescuer role when it is free, "0" not to
-- ARGV[6..] -> rescued task ids this worker has seen run again
-- Output: {rescuer (1 if this worker holds the role, else 0),
--          lapsed (ms the worker's previous record had been expired; -1
--          if it was current or this is the first heartbeat; -2 if it
--          was gone), {id, rescue ms, ...} the newest rescued tasks}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local lapsed = -1
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if prev then
  local exp = tonumber(string.match(prev, '^(%d+) '))
  if exp and exp < now then
    lapsed = now - exp
  end
elseif tonumber(ARGV[3]) > 1 then
  lapsed = -2
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d %s %s', now + ttl, ARGV[3], ARGV[4]))
local rescuer = 0
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ttl)
  rescuer = 1
elseif ARGV[5] == '1' and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ttl) then
  rescuer = 1
end
for i = 6, #ARGV do
  redis.call('ZREM', KEYS[3], ARGV[i])
end
return {rescuer, lapsed, redis.call('ZREVRANGE', KEYS[3], 0, ` + strconv.Itoa(rescuedReplyMax-1) + `, 'WITHSCORES')}
`)

// leaveScript removes a worker's record and gives up the rescuer role if it
// holds it, at the end of a graceful shutdown.
var leaveScript = redis.NewScript(`
-- KEYS[1] -> invalidator:{fleet}:workers; KEYS[2] -> invalidator:{fleet}:rescuer
-- ARGV[1] -> worker id
-- Output: 1
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
`)

// recordBody is the JSON part of a heartbeat record.
type recordBody struct {
	Host   string   `json:"host"`   // os.Hostname, as asynq registers its server
	PID    int      `json:"pid"`    // os.Getpid, as asynq registers its server
	Queues []string `json:"queues"` // the queues the worker serves
	// Servers is how many asynq servers the worker runs (registered in
	// asynq:servers under Host and PID): 1. The rescuer compares the count
	// of a host and pid with the servers registered there (rescue.go,
	// foreignServers). 0, in a record of a build without the field, is 1.
	Servers int `json:"servers,omitempty"`
	// Tasks are the ids, by queue, of the tasks the worker is running or
	// finished since its last heartbeat (asynq completes a task in Redis
	// just after the handler returns).
	Tasks map[string][]string `json:"tasks,omitempty"`
	// TimeoutMS is the worker's heartbeat timeout: its record's expiry
	// minus this is the time of its last heartbeat.
	TimeoutMS int64 `json:"timeout_ms"`
}

// workerRecord is one parsed heartbeat record.
type workerRecord struct {
	id     string
	expiry int64  // Redis TIME in ms after which the worker counts as dead
	seq    uint64 // the worker's heartbeat count
	body   recordBody
	bad    error // the JSON part did not decode; expiry and seq are valid
}

// parseRecord decodes a record written by heartbeatScript. A record whose
// JSON does not decode (a newer build's, say) keeps its expiry and seq, with
// bad set; one whose prefix does not parse is an error.
func parseRecord(id, v string) (workerRecord, error) {
	exp, rest, ok1 := strings.Cut(v, " ")
	seq, body, ok2 := strings.Cut(rest, " ")
	r := workerRecord{id: id}
	var err1, err2 error
	r.expiry, err1 = strconv.ParseInt(exp, 10, 64)
	r.seq, err2 = strconv.ParseUint(seq, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		return r, fmt.Errorf("heartbeat record of worker %q: want \"<expiry ms> <seq> <json>\", got %.40q", id, v)
	}
	if err := json.Unmarshal([]byte(body), &r.body); err != nil {
		r.bad = fmt.Errorf("heartbeat record of worker %q: %w", id, err)
	}
	return r, nil
}

// inflight tracks the tasks ProcessTask is running, for the heartbeat. It
// also remembers which tasks started since the heartbeat before last, so
// that a task the rescuer put back is recognised when it runs again here
// however quickly it finishes (see heartbeat.redeliveries).
type inflight struct {
	mu          sync.Mutex        // guards every field
	enabled     bool              // a heartbeat loop runs; off, begin records nothing
	running     map[string]string // task id -> queue
	finished    map[string]string // ended since the last snapshot, at most finishedMax
	started     map[string]string // task id -> queue, started since the last snapshot
	startedPrev map[string]string // started between the two snapshots before
}

func newInflight() *inflight {
	return &inflight{running: map[string]string{}, finished: map[string]string{},
		started: map[string]string{}, startedPrev: map[string]string{}}
}

// begin records a task that starts running; call the returned func when it
// ends.
func (f *inflight) begin(id, queue string) (end func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.enabled || id == "" {
		return func() {}
	}
	f.running[id] = queue
	f.started[id] = queue
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.running, id)
		if f.enabled && len(f.finished) < finishedMax {
			f.finished[id] = queue
		}
	}
}

// enable starts or stops the tracking; stopping forgets everything.
func (f *inflight) enable(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enabled = on
	if !on {
		clear(f.running)
		clear(f.finished)
		clear(f.started)
		clear(f.startedPrev)
	}
}

// snapshot returns the tasks to claim by queue: those running, and those
// that ended since the last snapshot, whose completion in Redis may still
// be on its way. It starts a new window of started tasks.
func (f *inflight) snapshot() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	byQueue := map[string][]string{}
	for id, q := range f.running {
		byQueue[q] = append(byQueue[q], id)
	}
	for id, q := range f.finished {
		if _, ok := f.running[id]; !ok {
			byQueue[q] = append(byQueue[q], id)
		}
	}
	clear(f.finished)
	f.startedPrev, f.started = f.started, f.startedPrev
	clear(f.started)
	return byQueue
}

// idle reports whether a heartbeat would claim nothing: no task running,
// finished since the last snapshot, or started in the two windows that
// redeliveries are checked against.
func (f *inflight) idle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.running)+len(f.finished)+len(f.started)+len(f.startedPrev) == 0
}

// unsnapshot undoes the window rotation of a snapshot whose heartbeat
// failed: the tasks started since the last heartbeat that got through must
// still be checked against the next reply.
func (f *inflight) unsnapshot() {
	f.mu.Lock()
	defer f.mu.Unlock()
	maps.Copy(f.started, f.startedPrev)
	clear(f.startedPrev)
}

// startedRecently reports whether task id started here since the snapshot
// before last, and on which queue.
func (f *inflight) startedRecently(id string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if q, ok := f.started[id]; ok {
		return q, true
	}
	q, ok := f.startedPrev[id]
	return q, ok
}

// heartbeat writes this worker's record every interval and holds the
// rescuer role when it can.
type heartbeat struct {
	rdb      redis.UniversalClient
	id       string
	body     recordBody // Tasks filled in per beat
	interval time.Duration
	timeout  time.Duration
	compete  bool // may take the rescuer role
	tasks    *inflight
	log      *slog.Logger
	metrics  *Metrics
	now      func() time.Time

	rescuer atomic.Bool // this worker holds the rescuer role (as of the last heartbeat)

	// Used by the loop goroutine only.
	seq    uint64
	acks   []string // rescued ids seen running here, removed by the next beat
	rested bool     // the last tick's heartbeat was skipped (see rest)

	mu        sync.Mutex // guards okSince and lastOK
	okSince   time.Time  // start of the current run of successful heartbeats; zero after a failure
	lastOK    time.Time  // the last successful heartbeat
	lastError time.Time  // when a failed heartbeat was last logged
}

// newWorkerID names a worker process uniquely: host, pid and a random part
// (a restarted process may reuse a pid).
func newWorkerID(host string, pid int) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s:%d:%s", host, pid, hex.EncodeToString(b))
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown-host" // what asynq registers then, too
	}
	return h
}

// rest reports whether this tick's heartbeat is skipped: every other one
// while the worker is idle. Why: an idle fleet's heartbeats were the
// largest part of what it cost the queue Redis (a script per worker per
// interval, 64 workers: 127 a second, over a third of all commands), and
// what they guard is the tasks a worker runs. Skipped only when there is
// nothing to claim (no task running, none finished or started in the last
// two windows, no redelivery to acknowledge), when this worker is not the
// rescuer (its role and its looks follow the beats), when the last beat
// got through, and when the record outlives two intervals with room to
// spare (a timeout of 4 intervals or more, the default): so an idle
// worker's record never lapses, and a task it takes is claimed by the
// next tick's beat, which is never skipped. The rescuer waits for an
// unclaimed task's lease to be a timeout old anyway, so the slower
// sequence of idle workers does not slow a rescue.
func (h *heartbeat) rest() bool {
	if h.rested || h.timeout < 4*h.interval || h.rescuer.Load() || len(h.acks) > 0 ||
		!h.tasks.idle() || !h.lastBeatOK() {
		h.rested = false
		return false
	}
	h.rested = true
	return true
}

// lastBeatOK reports whether the last heartbeat got through.
func (h *heartbeat) lastBeatOK() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.okSince.IsZero()
}

// beatWithin writes one heartbeat, giving up after a heartbeat timeout: a
// stalled Redis must not stall the loop.
func (h *heartbeat) beatWithin(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	return h.beat(ctx)
}

// beat writes one heartbeat.
func (h *heartbeat) beat(ctx context.Context) error {
	h.seq++
	body := h.body
	body.Tasks = h.tasks.snapshot()
	js, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("heartbeat: encode record: %w", err)
	}
	compete := "0"
	if h.compete {
		compete = "1"
	}
	args := []any{h.id, h.timeout.Milliseconds(), h.seq, string(js), compete}
	for _, id := range h.acks {
		args = append(args, id)
	}
	res, err := heartbeatScript.Run(ctx, h.rdb, fleetKeys, args...).Slice()
	if err == nil && len(res) != 3 {
		err = fmt.Errorf("malformed reply %v", res)
	}
	if err != nil {
		h.failed()
		h.tasks.unsnapshot()
		return fmt.Errorf("heartbeat: %w", err)
	}
	h.acks = h.acks[:0]
	h.succeeded()
	wasRescuer := h.rescuer.Swap(res[0] == int64(1))
	if !wasRescuer && h.rescuer.Load() {
		h.log.Info("this worker took the rescuer role: it puts the tasks of crashed workers back to their queue")
	}
	if lapsed, _ := res[1].(int64); lapsed != -1 {
		silent := "its record was gone"
		if lapsed >= 0 {
			silent = (time.Duration(lapsed) * time.Millisecond).String() + " past its heartbeat timeout"
		}
		h.log.Warn("this worker's heartbeat lapsed ("+silent+"): the rescuer may have run its in-flight tasks on other workers too",
			"worker_id", h.id, "heartbeat_timeout", h.timeout.String())
	}
	rescued, _ := res[2].([]any)
	h.redeliveries(rescued)
	return nil
}

// redeliveries logs and counts the rescued tasks that ran here again, and
// queues their ids for removal by the next heartbeat. A rescued task is put
// back after the heartbeat that lists it has begun, so it started here since
// the snapshot before last (or later, and then a later reply still lists it).
func (h *heartbeat) redeliveries(rescued []any) {
	for i := 0; i+1 < len(rescued); i += 2 {
		id, _ := rescued[i].(string)
		ms, _ := rescued[i+1].(string)
		queue, ok := h.tasks.startedRecently(id)
		if !ok {
			continue
		}
		h.acks = append(h.acks, id)
		h.metrics.redelivered(queue)
		attrs := []any{"task_id", id, "queue", queue}
		if at, err := strconv.ParseFloat(ms, 64); err == nil {
			attrs = append(attrs, "rescued_at", time.UnixMilli(int64(at)).UTC().Format(time.RFC3339Nano))
		}
		h.log.Warn("redelivered task: it was rescued from a crashed worker and ran again here", attrs...)
	}
}

func (h *heartbeat) succeeded() {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	// A gap as long as a timeout (this host stalled) restarts the run:
	// other workers' records may have lapsed meanwhile too.
	if h.okSince.IsZero() || now.Sub(h.lastOK) >= h.timeout {
		h.okSince = now
	}
	h.lastOK = now
}

func (h *heartbeat) failed() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.okSince = time.Time{}
}

// healthyFor is how long this worker's heartbeats have succeeded without a
// gap. The rescuer acts only after a full heartbeat timeout of it: after an
// outage of the queue Redis every record looks lapsed until its worker has
// written it again, which takes at most one timeout.
func (h *heartbeat) healthyFor() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.okSince.IsZero() {
		return 0
	}
	return h.now().Sub(h.okSince)
}

// logFailure logs a failed heartbeat at most once per heartbeat timeout.
func (h *heartbeat) logFailure(err error) {
	h.mu.Lock()
	now := h.now()
	quiet := now.Sub(h.lastError) < h.timeout
	if !quiet {
		h.lastError = now
	}
	h.mu.Unlock()
	if !quiet {
		h.log.Warn("heartbeat failed; if it keeps failing for "+h.timeout.String()+
			", other workers will take this worker for dead and run its tasks too", "err", err)
	}
}

// leave removes this worker's record and gives up the rescuer role.
func (h *heartbeat) leave(ctx context.Context) error {
	h.rescuer.Store(false)
	return leaveScript.Run(ctx, h.rdb, fleetKeys[:2], h.id).Err()
}

// fleet runs a worker's heartbeat and rescuer loops while Run serves.
type fleet struct {
	hb     *heartbeat
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startFleet starts the heartbeat loop, after one heartbeat written before
// the first task can be taken (a failure there is logged, not fatal: the
// loop retries), and the rescuer loop.
func (w *Worker) startFleet(ctx context.Context) *fleet {
	host, pid := hostname(), os.Getpid()
	id := newWorkerID(host, pid)
	hb := &heartbeat{
		rdb: w.cfg.Queue,
		id:  id,
		body: recordBody{Host: host, PID: pid, Queues: slices.Sorted(maps.Keys(w.Queues())), Servers: 1,
			TimeoutMS: w.cfg.HeartbeatTimeout.Milliseconds()},
		interval: w.cfg.HeartbeatInterval,
		timeout:  w.cfg.HeartbeatTimeout,
		compete:  !w.cfg.NoRescue,
		tasks:    w.inflight,
		log:      w.log.With("component", "heartbeat"),
		metrics:  w.metrics,
		now:      time.Now,
	}
	w.inflight.enable(true)
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &fleet{hb: hb, cancel: cancel}
	if err := hb.beatWithin(ctx); err != nil {
		hb.logFailure(err)
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		tick := time.NewTicker(hb.interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if hb.rest() {
					continue
				}
				if err := hb.beatWithin(ctx); err != nil && ctx.Err() == nil {
					hb.logFailure(err)
				}
			}
		}
	}()
	if !w.cfg.NoRescue {
		r := newRescuer(w, hb)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			r.loop(ctx)
		}()
	}
	w.log.Info("heartbeats started", "worker_id", id, "heartbeat_interval", hb.interval.String(),
		"heartbeat_timeout", hb.timeout.String(), "rescue", !w.cfg.NoRescue)
	return f
}

// stop ends both loops and removes the worker's record. Call it only after
// the asynq server has shut down: until then the record keeps claiming the
// tasks that are finishing, so that no rescuer takes them.
func (f *fleet) stop(ctx context.Context) {
	f.cancel()
	f.wg.Wait()
	f.hb.tasks.enable(false)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.hb.timeout)
	defer cancel()
	if err := f.hb.leave(ctx); err != nil {
		f.hb.log.Warn("could not remove this worker's heartbeat record; it lapses by itself", "err", err)
	}
}
