package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/internal/wake"
)

// The rescuer reads and changes asynq's own keys (asynqkeys.go):
// rescueScript does to a task what asynq's Requeue (its graceful-shutdown
// path) does.

// Fields the rescuer adds to an asynq task hash; they die with the task.
const (
	// rescuesField counts the rescues of a task: one that kills every
	// worker that takes it is rescued MaxRescues times, then left to asynq.
	rescuesField = "invalidator_rescues"
	// rescuedFromField is "<worker id>#<seq>" of the lapsed record the task
	// was last rescued from, so that a record's stale claim cannot rescue
	// a task a second time once a live worker runs it again.
	rescuedFromField = "invalidator_rescued_from"
)

const (
	// keepLapsedRecords is how long a dead worker's record stays after it
	// lapsed: longer than asynq keeps a dead server in asynq:servers (10 s),
	// so that server is known to be one of ours (see foreignServers).
	keepLapsedRecords = time.Minute
	// keepRescued is how long a rescued task's id waits to be seen running
	// again; a rescued task goes to the head of its queue.
	keepRescued = time.Hour
	// unclaimedFrom marks a rescue of a task no record claimed.
	unclaimedFrom = "unclaimed"
	// asynqServerLinger is how long after its worker's last heartbeat a
	// dead worker's asynq server may still be registered: asynq writes
	// its entry every 5 s, to expire 10 s later by the worker's clock
	// (whole seconds); the rest is a margin for clock skew. A lapsed
	// record accounts for a server of its host and pid this long.
	asynqServerLinger = 20 * time.Second
)

// rescueScript puts one orphaned task back to its queue, atomically and
// only if it is still active, so that a live worker's completion and the
// rescue cannot both win.
var rescueScript = redis.NewScript(`
-- KEYS[1] -> asynq:{<queue>}:active (list)
-- KEYS[2] -> asynq:{<queue>}:lease (zset)
-- KEYS[3] -> asynq:{<queue>}:pending (list)
-- KEYS[4] -> asynq:{<queue>}:t:<task id> (hash)
-- ARGV[1] -> task id; ARGV[2] -> max rescues of one task
-- ARGV[3] -> "<worker id>#<seq>" of the lapsed record that claims the task,
--            or "unclaimed"
-- ARGV[4] -> for an unclaimed task, the highest lease expiry (Unix seconds)
--            it may have: a younger lease means a worker took or extended
--            it a moment ago
-- Output: the task's rescue count after this rescue; 0 if it is no longer
--         active, or is unclaimed with a young lease; -1 if it has been
--         rescued ARGV[2] times (it is left to asynq); -2 if it was already
--         rescued from this record (the claim is stale: the task runs again,
--         on a worker whose heartbeat has not listed it yet, or that died
--         before it did)
if redis.call('HGET', KEYS[4], 'state') ~= 'active' then
  return 0
end
if not redis.call('LPOS', KEYS[1], ARGV[1]) then
  return 0
end
if ARGV[3] == '` + unclaimedFrom + `' then
  local lease = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if lease and tonumber(lease) > tonumber(ARGV[4]) then
    return 0
  end
end
if ARGV[3] ~= '` + unclaimedFrom + `' and redis.call('HGET', KEYS[4], '` + rescuedFromField + `') == ARGV[3] then
  return -2
end
local n = tonumber(redis.call('HGET', KEYS[4], '` + rescuesField + `') or '0')
if n >= tonumber(ARGV[2]) then
  return -1
end
-- asynq's Requeue: RPUSH to pending (the end Dequeue takes next), state
-- pending, LREM from active, ZREM the lease. The writes that need memory
-- come first, so that an out-of-memory error leaves the task as it was.
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[4], 'state', 'pending', '` + rescuedFromField + `', ARGV[3], '` + rescuesField + `', n + 1)
redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n + 1
`)

// lookScript reads the fleet's records for the rescuer, and forgets the
// records of workers dead for long and rescued ids never seen again.
var lookScript = redis.NewScript(`
-- KEYS[1] -> invalidator:{fleet}:workers; KEYS[2] -> invalidator:{fleet}:rescuer
-- KEYS[3] -> invalidator:{fleet}:rescued
-- ARGV[1] -> the caller's worker id
-- ARGV[2] -> ms a lapsed record is kept; ARGV[3] -> ms a rescued id is kept
-- Output: nil if the caller does not hold the rescuer role; else
--         {Redis TIME in ms, {worker id, record, ...}}
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return false
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local kept = {}
for i = 1, #all, 2 do
  local exp = tonumber(string.match(all[i + 1], '^(%d+) '))
  if exp and exp + tonumber(ARGV[2]) < now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    table.insert(kept, all[i])
    table.insert(kept, all[i + 1])
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[3]))
return {now, kept}
`)

// errNotRescuer is returned by a look of a worker that does not hold the
// rescuer role.
var errNotRescuer = errors.New("this worker does not hold the rescuer role")

// taskRef names an asynq task.
type taskRef struct{ queue, id string }

// sighting is the first time the rescuer saw an active task that no record
// claims, and the live records' sequence numbers at that look.
type sighting struct {
	since time.Time
	seqs  map[string]uint64
}

// rescuer puts the tasks of dead workers back to their queue. Only the
// worker holding the rescuer role looks; its fields are used by its loop
// goroutine only.
type rescuer struct {
	rdb        redis.UniversalClient
	wake       *wake.Pusher // wakes an idle worker for a task put back
	hb         *heartbeat
	log        *slog.Logger
	metrics    *Metrics
	maxRescues int

	unclaimed map[taskRef]*sighting
	deadSeen  map[string]uint64 // dead worker id -> seq of the record reported
	leftAlone map[taskRef]bool  // tasks reported as left to asynq
	// rescuedFrom remembers, while the dead worker's record is kept, the
	// tasks put back from it (by this rescuer, or by an earlier one as
	// rescueScript reports): that record's claim is stale once the task
	// runs again, so such a task counts as unclaimed until a live
	// heartbeat claims it. If the worker that took it again died before
	// its heartbeat listed it, it is rescued as unclaimed; if that worker
	// listed it, its record's claim, which lapsed later, wins.
	rescuedFrom map[taskRef]string
	queues      []string // every queue the records named at the last look, and our own
	lastError   time.Time
}

func newRescuer(w *Worker, hb *heartbeat) *rescuer {
	return &rescuer{
		rdb:         w.cfg.Queue,
		wake:        w.wake,
		hb:          hb,
		log:         w.log.With("component", "rescuer"),
		metrics:     w.metrics,
		maxRescues:  w.cfg.MaxRescues,
		unclaimed:   map[taskRef]*sighting{},
		deadSeen:    map[string]uint64{},
		leftAlone:   map[taskRef]bool{},
		rescuedFrom: map[taskRef]string{},
		queues:      hb.body.Queues,
	}
}

// loop looks every heartbeat interval while this worker holds the rescuer
// role and its own heartbeats have been healthy for a heartbeat timeout.
func (r *rescuer) loop(ctx context.Context) {
	tick := time.NewTicker(r.hb.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !r.hb.rescuer.Load() || r.hb.healthyFor() < r.hb.timeout {
			r.reset()
			continue
		}
		err := r.lookWithin(ctx)
		switch {
		case errors.Is(err, errNotRescuer):
			r.reset()
		case err != nil && ctx.Err() == nil:
			if now := r.hb.now(); now.Sub(r.lastError) >= r.hb.timeout {
				r.lastError = now
				r.log.Warn("rescuer: look failed; retrying", "err", err)
			}
		}
	}
}

// reset forgets what the rescuer saw that may change while it does not
// look: another worker may look meanwhile. (leftAlone only keeps reports
// from repeating; it is pruned as the tasks finish.)
func (r *rescuer) reset() {
	clear(r.unclaimed)
	clear(r.rescuedFrom)
}

func (r *rescuer) lookWithin(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.hb.timeout)
	defer cancel()
	return r.look(ctx)
}

// candidate is a task the rescuer will put back.
type candidate struct {
	ref         taskRef
	from        string        // rescuedFromField value
	worker      string        // the dead worker's id; "" when unclaimed
	orphanedFor time.Duration // since the dead worker's last heartbeat, or since first seen unclaimed
	maxLease    string        // rescueScript's ARGV[4]
}

// look is one round of the rescuer: it reads the active lists of every
// queue a record named at the last look, and the records, and puts back
//   - at once, each active task claimed by a lapsed record (a dead worker);
//   - each active task no record claims, once every live worker has written
//     two heartbeats since the task was first seen (a live worker claims a
//     task in its first heartbeat after taking it) and its asynq lease was
//     taken or extended a heartbeat timeout ago. Such tasks belong to a
//     worker that died before its heartbeat listed them, or to an asynq
//     server that writes no heartbeats; so they are left alone while any
//     asynq server that is not ours is registered (a worker of an older
//     build during a rolling upgrade: its tasks would run twice).
func (r *rescuer) look(ctx context.Context) error {
	// The active lists are read before the records: a live worker's second
	// heartbeat after this look lists every task it had taken by then.
	active, err := r.activeTasks(ctx, r.queues)
	if err != nil {
		return err
	}
	res, err := lookScript.Run(ctx, r.rdb, fleetKeys, r.hb.id, keepLapsedRecords.Milliseconds(), keepRescued.Milliseconds()).Slice()
	if errors.Is(err, redis.Nil) {
		return errNotRescuer
	}
	if err != nil {
		return fmt.Errorf("read heartbeat records: %w", err)
	}
	if len(res) != 2 {
		return fmt.Errorf("read heartbeat records: malformed reply %v", res)
	}
	now, _ := res[0].(int64)
	raw, _ := res[1].([]any)
	st := r.parseRecords(now, raw)
	r.queues = st.queues
	var dead, unclaimed []candidate
	claimedByDead := map[string]int{}
	for _, ref := range active {
		c := st.claims[ref]
		from := ""
		if c != nil {
			from = c.id + "#" + strconv.FormatUint(c.seq, 10)
		}
		switch {
		case c != nil && c.expiry >= now:
			delete(r.unclaimed, ref)
		case c != nil && r.rescuedFrom[ref] != from:
			delete(r.unclaimed, ref)
			claimedByDead[c.id]++
			dead = append(dead, candidate{ref: ref, from: from, worker: c.id,
				orphanedFor: time.Duration(now-lastBeat(c)) * time.Millisecond})
		default:
			s := r.unclaimed[ref]
			if s == nil {
				r.unclaimed[ref] = &sighting{since: r.hb.now(), seqs: st.liveSeqs}
				continue
			}
			if advanced(s.seqs, st.liveSeqs) {
				unclaimed = append(unclaimed, candidate{ref: ref, from: unclaimedFrom, orphanedFor: r.hb.now().Sub(s.since),
					maxLease: r.maxUnclaimedLease(now)})
			}
		}
	}
	r.forget(active)
	r.reportDead(now, st.dead, claimedByDead)
	if len(unclaimed) > 0 {
		if reason, err := r.foreignServers(ctx, now, st); err != nil {
			return err
		} else if reason != "" {
			r.leaveAlone(unclaimed, "foreign_server",
				"active task claimed by no heartbeat, and "+reason+": left to asynq's lease recovery (60-120 s)")
			unclaimed = nil
		}
	}
	return r.rescueAll(ctx, now, append(dead, unclaimed...))
}

// rescueAll puts cs back. Their ids go into the rescued set first, so that
// a worker that runs one again finds it there whatever the timing (see
// heartbeat.redeliveries); those not put back leave it again.
func (r *rescuer) rescueAll(ctx context.Context, now int64, cs []candidate) error {
	if len(cs) == 0 {
		return nil
	}
	// Ids already in the set (rescued before, not yet seen running) stay
	// as they are.
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ref.id
	}
	listed, err := r.rdb.ZMScore(ctx, fleetRescuedKey, ids...).Result()
	if err != nil {
		return fmt.Errorf("read rescued tasks: %w", err)
	}
	var zs []redis.Z
	added := map[string]bool{}
	for i, id := range ids {
		if listed[i] == 0 {
			zs = append(zs, redis.Z{Score: float64(now), Member: id})
			added[id] = true
		}
	}
	if len(zs) > 0 {
		if err := r.rdb.ZAdd(ctx, fleetRescuedKey, zs...).Err(); err != nil {
			// Only the redelivery logs depend on it: rescue anyway.
			r.log.Warn("rescuer: could not record the tasks it rescues; their redeliveries will not be logged", "err", err)
		}
	}
	var kept []any // added, but not rescued after all
	var rerr error
	for _, c := range cs {
		ok := false
		if rerr == nil {
			ok, rerr = r.rescue(ctx, c)
		}
		switch {
		case !ok && added[c.ref.id]:
			kept = append(kept, c.ref.id)
		case ok && c.from != unclaimedFrom:
			r.rescuedFrom[c.ref] = c.from
		}
	}
	if len(kept) > 0 {
		if err := r.rdb.ZRem(ctx, fleetRescuedKey, kept...).Err(); err != nil && rerr == nil {
			r.log.Warn("rescuer: could not clean up the rescued-task set", "err", err)
		}
	}
	return rerr
}

// fleetState is what one look read from the records.
type fleetState struct {
	claims   map[taskRef]*workerRecord // a live record's claim wins over a dead one's
	dead     []*workerRecord
	liveSeqs map[string]uint64 // live worker id -> seq
	queues   []string          // every queue a record names, sorted
	// ours is, by "host:pid", how many asynq servers the records say run
	// there: a live record's, and a lapsed one's while its server may
	// still be registered (asynqServerLinger).
	ours map[string]int
	bad  []string // ids of records that did not decode
}

func (r *rescuer) parseRecords(now int64, raw []any) *fleetState {
	st := &fleetState{claims: map[taskRef]*workerRecord{}, liveSeqs: map[string]uint64{}, ours: map[string]int{}}
	queues := map[string]bool{}
	for _, q := range r.hb.body.Queues {
		queues[q] = true
	}
	var live []*workerRecord
	for i := 0; i+1 < len(raw); i += 2 {
		id, _ := raw[i].(string)
		v, _ := raw[i+1].(string)
		rec, err := parseRecord(id, v)
		if err != nil || rec.bad != nil {
			st.bad = append(st.bad, id)
			if err != nil {
				continue
			}
		}
		if rec.expiry >= now || lastBeat(&rec)+asynqServerLinger.Milliseconds() >= now {
			st.ours[rec.body.Host+":"+strconv.Itoa(rec.body.PID)] += max(rec.body.Servers, 1)
		}
		for _, q := range rec.body.Queues {
			queues[q] = true
		}
		if rec.expiry >= now {
			live = append(live, &rec)
			st.liveSeqs[id] = rec.seq
		} else {
			st.dead = append(st.dead, &rec)
		}
	}
	// A task claimed by several records is the last one's to lapse: a
	// worker that took a rescued task again lists it after the dead
	// worker it was rescued from last did. A live record's claim wins.
	byExpiry := func(a, b *workerRecord) int { return cmp.Compare(a.expiry, b.expiry) }
	slices.SortFunc(st.dead, byExpiry)
	slices.SortFunc(live, byExpiry)
	for _, rec := range append(st.dead, live...) {
		for q, ids := range rec.body.Tasks {
			for _, id := range ids {
				st.claims[taskRef{q, id}] = rec
			}
		}
	}
	for q := range queues {
		st.queues = append(st.queues, q)
	}
	slices.Sort(st.queues)
	return st
}

// maxUnclaimedLease is the highest asynq lease expiry an unclaimed task may
// have to be rescued: one taken or extended at least a heartbeat timeout
// ago. asynq sets the expiry to the worker's clock + 30 s in whole seconds
// (so the time was below expiry - 29 s) at Dequeue and every 5 s after. A
// live worker may take a moment between Dequeue and the handler's start,
// when the task is not in its heartbeat yet; this keeps such a task from
// being taken from it, whatever the heartbeats say.
func (r *rescuer) maxUnclaimedLease(nowMs int64) string {
	return strconv.FormatFloat(float64(nowMs-r.hb.timeout.Milliseconds())/1000+29, 'f', 3, 64)
}

// lastBeat is when a record's worker last wrote it, in Redis ms.
func lastBeat(rec *workerRecord) int64 {
	return rec.expiry - rec.body.TimeoutMS
}

// advanced reports whether every live worker has written two heartbeats
// since the look that recorded then: the second one's snapshot of running
// tasks was taken after that look read the active lists.
func advanced(then, now map[string]uint64) bool {
	for id, seq := range now {
		if seq < then[id]+2 {
			return false
		}
	}
	return true
}

// activeTasks returns the active tasks of queues, in one pipeline.
func (r *rescuer) activeTasks(ctx context.Context, queues []string) ([]taskRef, error) {
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(queues))
	for i, q := range queues {
		cmds[i] = pipe.LRange(ctx, asynqActiveKey(q), 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read active tasks: %w", err)
	}
	var refs []taskRef
	for i, c := range cmds {
		for _, id := range c.Val() {
			refs = append(refs, taskRef{queues[i], id})
		}
	}
	return refs, nil
}

// forget drops what the rescuer remembers of tasks no longer active.
func (r *rescuer) forget(active []taskRef) {
	still := make(map[taskRef]bool, len(active))
	for _, ref := range active {
		still[ref] = true
	}
	for ref := range r.unclaimed {
		if !still[ref] {
			delete(r.unclaimed, ref)
		}
	}
	for ref := range r.leftAlone {
		if !still[ref] {
			delete(r.leftAlone, ref)
		}
	}
}

// reportDead logs and counts each worker whose record lapsed, once.
func (r *rescuer) reportDead(now int64, dead []*workerRecord, active map[string]int) {
	seen := make(map[string]bool, len(dead))
	for _, rec := range dead {
		seen[rec.id] = true
		if seq, ok := r.deadSeen[rec.id]; ok && seq == rec.seq {
			continue
		}
		r.deadSeen[rec.id] = rec.seq
		r.metrics.deadWorker()
		r.log.Warn("worker stopped sending heartbeats: taken for dead, its tasks go back to their queue",
			"worker_id", rec.id, "host", rec.body.Host, "pid", rec.body.PID,
			"silent_for", (time.Duration(now-lastBeat(rec)) * time.Millisecond).String(), "active_tasks", active[rec.id])
	}
	for id := range r.deadSeen {
		if !seen[id] {
			delete(r.deadSeen, id)
		}
	}
	for ref, from := range r.rescuedFrom {
		if id := from[:max(strings.LastIndexByte(from, '#'), 0)]; !seen[id] {
			delete(r.rescuedFrom, ref)
		}
	}
}

// foreignServers returns why tasks no record claims must be left alone: a
// record that did not decode (a newer build's), or a registered asynq
// server that no record accounts for: one whose host and pid no record has
// (an older build, or another program on these queues), or more servers
// under one host and pid than its records run (a program that runs a
// worker and an asynq server of its own); "" if there is no reason.
func (r *rescuer) foreignServers(ctx context.Context, now int64, st *fleetState) (string, error) {
	if len(st.bad) > 0 {
		return "heartbeat records of workers " + strings.Join(st.bad, ", ") + " do not decode (a newer build?)", nil
	}
	members, err := r.rdb.ZRangeByScore(ctx, asynqServersKey, &redis.ZRangeBy{Min: strconv.FormatInt(now/1000, 10), Max: "+inf"}).Result()
	if err != nil {
		return "", fmt.Errorf("read asynq servers: %w", err)
	}
	var foreign []string
	byHostPID := map[string][]string{}
	for _, m := range members {
		hp, ok := asynqServerHostPID(m)
		if !ok {
			foreign = append(foreign, m)
			continue
		}
		byHostPID[hp] = append(byHostPID[hp], m)
	}
	// Which server of a host and pid is ours cannot be told: name them all.
	for _, hp := range slices.Sorted(maps.Keys(byHostPID)) {
		if ms := byHostPID[hp]; len(ms) > st.ours[hp] {
			foreign = append(foreign, ms...)
		}
	}
	if len(foreign) == 0 {
		return "", nil
	}
	return fmt.Sprintf("asynq servers that no invalidator heartbeat accounts for serve this Redis (%s)", strings.Join(foreign, ", ")), nil
}

// asynqServerHostPID returns "host:pid" of an asynq:servers member,
// "asynq:servers:{<host>:<pid>:<server uuid>}".
func asynqServerHostPID(member string) (string, bool) {
	s, ok := strings.CutPrefix(member, asynqServersKey+":{")
	if !ok {
		return "", false
	}
	s, ok = strings.CutSuffix(s, "}")
	i := strings.LastIndexByte(s, ':')
	if !ok || i < 0 {
		return "", false
	}
	hp := s[:i]
	j := strings.LastIndexByte(hp, ':')
	if j < 0 {
		return "", false
	}
	if _, err := strconv.Atoi(hp[j+1:]); err != nil {
		return "", false
	}
	return hp, true
}

// leaveAlone logs and counts, once per task, tasks the rescuer will not
// put back.
func (r *rescuer) leaveAlone(cs []candidate, reason, msg string) {
	for _, c := range cs {
		if r.leftAlone[c.ref] {
			continue
		}
		r.leftAlone[c.ref] = true
		r.metrics.rescueSkipped(c.ref.queue, reason)
		r.log.Warn(msg, "task_id", c.ref.id, "queue", c.ref.queue, "worker_id", c.worker)
	}
}

// rescue puts one task back, and reports whether it did.
func (r *rescuer) rescue(ctx context.Context, c candidate) (bool, error) {
	q, id := c.ref.queue, c.ref.id
	keys := []string{asynqActiveKey(q), asynqLeaseKey(q), asynqPendingKey(q), asynqTaskKey(q, id)}
	n, err := rescueScript.Run(ctx, r.rdb, keys, id, r.maxRescues, c.from, c.maxLease).Int()
	if err != nil {
		return false, fmt.Errorf("rescue task %s of queue %s: %w", id, q, err)
	}
	switch {
	case n > 0:
		r.wake.Wake(q, 1)
		r.metrics.rescued(q)
		delete(r.unclaimed, c.ref)
		msg := "rescued task of a crashed worker: back to its queue"
		if c.worker == "" {
			msg = "rescued active task that no live worker claims: back to its queue"
		}
		r.log.Warn(msg, "task_id", id, "queue", q, "worker_id", c.worker,
			"orphaned_for", c.orphanedFor.Round(time.Millisecond).String(), "rescues", n)
		return true, nil
	case n == -2:
		// Rescued from this record before, by an earlier rescuer: from the
		// next look on, the task counts as unclaimed.
		r.rescuedFrom[c.ref] = c.from
	case n < 0:
		r.leaveAlone([]candidate{c}, "max_rescues", fmt.Sprintf("task was rescued %d times and its workers keep dying: "+
			"left to asynq's lease recovery, which counts a failed attempt each time and ends in the dead letter", r.maxRescues))
	}
	return false, nil
}
