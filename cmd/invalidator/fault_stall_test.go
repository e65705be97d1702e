package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
)

// stallPolicy has two budgets: patient outlasts the stall (many retries),
// tight does not (two attempts).
const stallPolicy = `version: 1
default_class: patient
classes:
  patient: {ttl: 1m, weight: 3, max_retry: 100, timeout: 2s, backoff_base: 100ms, backoff_max: 400ms}
  tight: {ttl: 1m, weight: 1, max_retry: 1, timeout: 1s, backoff_base: 100ms, backoff_max: 100ms}
families:
  item: {template: "item:{id}", class: patient}
  page: {template: "page:{id}:{n}", class: patient}
  feed: {template: "feed:{user}", class: patient, strategy: version}
  flash: {template: "flash:{id}", class: tight}
events:
  item.changed:
    attributes: [id]
    invalidates: [item, {family: feed, params: {user: id}}]
  flash.changed:
    attributes: [id]
    invalidates: [flash]
`

// A cache Redis that stops answering (SIGSTOP: connections stay open,
// nothing is answered) while invalidations keep arriving, then comes back.
// The README's promise: a task fails, retries with its class's backoff for
// max_retry attempts, then goes to the dead letter, from which `dead retry`
// replays it. So when the cache is back, every invalidation of a class whose
// budget outlasts the stall has been applied; those of a class whose budget
// is shorter are in the dead letter, and only those, with their reason;
// `dead retry --all` applies them; and then every key is gone.
//
// Timers are shortened through configuration, not sleeps: the cache URL
// sets a 200ms read timeout (go-redis's default is 3s), classes have 1-2s
// timeouts and sub-second backoffs. The stall lasts until every task that
// arrived during it has failed at least twice and the tight class's tasks
// are dead-lettered (about 6s here: 30 read timeouts, where a 30s stall is
// 10 of go-redis's default 3s). The dynamics are those of a 30s stall under
// the default settings: each task fails several attempts, retries, and
// succeeds once the cache answers; a budget shorter than the stall ends in
// the dead letter.
func TestFaultCacheStall(t *testing.T) {
	t.Parallel()
	bin := testBinary(t)
	start := time.Now()
	queueDB := redistest.NewDB(t)
	cache := redistest.StartServer(t)
	cc := cache.NewClient() // used only while the cache answers
	ctx := context.Background()
	policyPath := writePolicy(t, stallPolicy)
	policy, err := keyspec.Parse(policyPath, []byte(stallPolicy))
	require.NoError(t, err)

	// Everything the stall's invalidations will remove, cached beforehand.
	var items, pages, flashes []string
	for i := range 300 {
		items = append(items, fmt.Sprintf("item:%d", i))
	}
	for i := range 200 {
		pages = append(pages, fmt.Sprintf("page:5:%d", i))
	}
	for i := range 5 {
		flashes = append(flashes, fmt.Sprintf("flash:%d", i))
	}
	setAll(t, cc, items, pages, flashes, []string{"page:6:1"})
	feed, err := policy.Family("feed")
	require.NoError(t, err)
	vkey, err := feed.VersionKey(map[string]string{"user": "1"})
	require.NoError(t, err)
	require.NoError(t, cc.Set(ctx, vkey, 1000, 0).Err())

	env := append(os.Environ(), envRedisURL+"="+queueDB.URL, envPolicy+"="+policyPath)
	cacheURL := "redis://" + cache.Addr() + "/0?read_timeout=200ms&write_timeout=200ms&dial_timeout=200ms"
	worker := startProc(t, bin, env, "worker", "--cache-redis", cacheURL, "--poll-interval", "2ms", "--retry-check-interval", "50ms")
	waitLog(t, worker, "worker started")
	client, err := enqueue.New(queueDB.Client, enqueue.Config{Policy: policy})
	require.NoError(t, err)
	insp := asynq.NewInspectorFromRedisClient(queueDB.Client)

	cache.Pause()
	stalled := time.Now()
	// Invalidations keep arriving: key deletes, events with a key and a
	// bump, a family delete, a bump, and the tight class's events.
	type sent struct{ queue, id string }
	var patient, tight []sent
	for i := 0; i < len(items)-10; i += 10 {
		ids, err := client.DeleteKeys(ctx, items[i:i+10]...)
		require.NoError(t, err)
		patient = append(patient, sent{"invalidator-patient", ids[0]})
	}
	for _, id := range []string{"290", "295"} {
		eid, err := client.Publish(ctx, "item.changed", map[string]string{"id": id})
		require.NoError(t, err)
		patient = append(patient, sent{"invalidator-patient", eid})
	}
	ids, err := client.DeleteKeys(ctx, items[290:]...)
	require.NoError(t, err)
	patient = append(patient, sent{"invalidator-patient", ids[0]})
	fid, err := client.DeleteFamily(ctx, "page", map[string]string{"id": "5"})
	require.NoError(t, err)
	bid, err := client.BumpVersion(ctx, "feed", map[string]string{"user": "1"})
	require.NoError(t, err)
	patient = append(patient, sent{"invalidator-patient", fid}, sent{"invalidator-patient", bid})
	for i := range flashes {
		id, err := client.Publish(ctx, "flash.changed", map[string]string{"id": fmt.Sprint(i)})
		require.NoError(t, err)
		tight = append(tight, sent{"invalidator-tight", id})
	}

	// The stall lasts until every task has failed twice (patient) or is
	// dead-lettered (tight): events, not a fixed sleep.
	deadline := time.Now().Add(40 * time.Second)
	for {
		waiting := 0
		for _, s := range patient {
			ti, err := insp.GetTaskInfo(s.queue, s.id)
			require.NoError(t, err, "patient task %s vanished during the stall: acknowledged without the cache?", s.id)
			require.NotEqual(t, asynq.TaskStateArchived, ti.State, "patient task dead-lettered during the stall: %s", ti.LastErr)
			if ti.Retried < 2 {
				waiting++
			}
		}
		for _, s := range tight {
			ti, err := insp.GetTaskInfo(s.queue, s.id)
			require.NoError(t, err, "tight task %s vanished during the stall: acknowledged without the cache?", s.id)
			if ti.State != asynq.TaskStateArchived {
				waiting++
			}
		}
		if waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			cache.Resume()
			t.Fatalf("%d tasks still waiting for their failures after %s of stall; worker logs:\n%s", waiting, time.Since(stalled), worker.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cache.Resume()
	stall := time.Since(stalled)

	// Back: the patient class's invalidations all land, by retries alone.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		left := existing(t, cc, items...) + existing(t, cc, pages...)
		v, _ := cc.Get(ctx, vkey).Int64()
		if left == 0 && v > 1000 {
			break
		}
		require.True(t, time.Now().Before(deadline), "%d keys left and version %d after the cache came back; worker logs:\n%s", left, v, worker.logs)
	}
	require.Equal(t, 1, existing(t, cc, "page:6:1"), "a key outside the family was deleted")
	requireDrained(t, insp, "invalidator-patient")

	// The dead letter holds the tight class's events, and nothing else.
	dead := binDeadList(t, bin, env)
	require.Len(t, dead, len(tight), "dead letter: %+v", dead)
	for _, d := range dead {
		require.Equal(t, "invalidator-tight", d.Queue, "%+v", d)
		require.NotContains(t, d.Reason, "poison", "%+v", d)
	}
	// A dead-lettered task's UNLINK may still have run: one written to
	// the stopped cache before the task's timeout sits in the socket
	// buffer, and the cache runs it when it resumes (an extra delete,
	// never a lost one: a make test saw 3 of 5 run). Those landed while the
	// patient class drained above, so the keys are set again here, and
	// only `dead retry` below can delete them.
	setAll(t, cc, flashes)
	require.Contains(t, worker.logs.String(), "task moved to dead letter: retries exhausted")

	// `dead retry` applies them.
	out := binRun(t, bin, env, "dead", "retry", "--all")
	require.Contains(t, out, fmt.Sprintf("%d tasks put back", len(tight)))
	for deadline := time.Now().Add(20 * time.Second); existing(t, cc, flashes...) > 0; time.Sleep(10 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "dead-lettered invalidations not applied after dead retry; worker logs:\n%s", worker.logs)
	}
	requireDrained(t, insp, "invalidator-patient", "invalidator-tight")
	require.Empty(t, binDeadList(t, bin, env))
	select {
	case err := <-worker.exited:
		t.Fatalf("the worker exited during the stall: %v; logs:\n%s", err, worker.logs)
	default:
	}
	t.Logf("stall %s (%d patient and %d tight tasks during it); whole test %s", stall.Round(time.Millisecond), len(patient), len(tight), time.Since(start).Round(time.Millisecond))
}

// setAll sets every key of every list to "1".
func setAll(t *testing.T, rdb redis.UniversalClient, lists ...[]string) {
	t.Helper()
	pipe := rdb.Pipeline()
	for _, l := range lists {
		for _, k := range l {
			pipe.Set(context.Background(), k, 1, 0)
		}
	}
	_, err := pipe.Exec(context.Background())
	require.NoError(t, err)
}

// waitLog waits until p has logged want.
func waitLog(t *testing.T, p *proc, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(p.logs.String(), want); time.Sleep(5 * time.Millisecond) {
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("%v exited (%v) before logging %q:\n%s", p.cmd.Args, err, want, p.logs)
		default:
		}
		require.True(t, time.Now().Before(deadline), "no %q in the logs of %v:\n%s", want, p.cmd.Args, p.logs)
	}
}

// binRun runs the binary with args to completion and returns its output.
func binRun(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	c := exec.Command(bin, args...)
	c.Env = env
	out, err := c.CombinedOutput()
	require.NoError(t, err, "invalidator %v: %s", args, out)
	return string(out)
}

// binDeadList runs `invalidator dead list --json`.
func binDeadList(t *testing.T, bin string, env []string) []listedDead {
	t.Helper()
	c := exec.Command(bin, "dead", "list", "--json")
	c.Env = env
	out, err := c.Output()
	require.NoError(t, err)
	var rows []listedDead
	require.NoError(t, json.Unmarshal(out, &rows), string(out))
	return rows
}
