package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
)

const cdcPolicy = `version: 1
classes:
  standard: {ttl: 10m}
families:
  product: {template: "product:{id}", class: standard}
events:
  product.updated: {attributes: [id], invalidates: [product]}
tables:
  public.products: {event: product.updated, attributes: {id: id}}
`

// Two cdc processes on one slot, one of them standing by; the one reading
// is killed with SIGKILL while single-row transactions commit: the standby
// takes over, and every key whose row changed is removed by a real worker.
func TestCDCKillMidStreamStandbyTakesOver(t *testing.T) {
	t.Parallel()
	bin := testBinary(t)
	db := pgtest.NewDB(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, "CREATE TABLE products (id int PRIMARY KEY, v int NOT NULL)")
	require.NoError(t, err)
	cache := redistest.NewDB(t)
	queue := redistest.NewDB(t)
	slot := db.Name // slots are the server's: one per test
	env := append(os.Environ(), envCDCDSN+"="+db.DSN, envRedisURL+"="+queue.URL, envPolicy+"="+writePolicy(t, cdcPolicy),
		envCacheRedisURL+"="+cache.URL)
	t.Cleanup(func() {
		// A slot keeps its database from being dropped; the killed
		// readers' walsenders let go of it soon after.
		require.Eventually(t, func() bool {
			out, err := runProc(bin, env, "cdc", "teardown", "--slot", slot)
			return err == nil || !strings.Contains(out, "being read")
		}, 30*time.Second, 20*time.Millisecond)
	})

	out, err := runProc(bin, env, "cdc", "setup", "--slot", slot)
	require.NoError(t, err, out)
	require.Contains(t, out, "slot "+slot+": created")

	args := []string{"cdc", "--slot", slot, "--takeover-interval", "50ms"}
	first := startProc(t, bin, env, args...)
	require.Eventually(t, func() bool { return strings.Contains(first.logs.String(), "cdc reader streaming") },
		30*time.Second, 10*time.Millisecond, "logs:\n%s", first.logs)
	second := startProc(t, bin, env, args...)
	require.Eventually(t, func() bool { return strings.Contains(second.logs.String(), "standby") },
		30*time.Second, 10*time.Millisecond, "logs:\n%s", second.logs)
	w := startProc(t, bin, env, "worker")

	var (
		mu   sync.Mutex
		keys []string
	)
	commit := func(id int) {
		key := fmt.Sprintf("product:%d", id)
		require.NoError(t, cache.Client.Set(ctx, key, "v", 0).Err())
		_, err := db.Pool.Exec(ctx, "INSERT INTO products VALUES ($1, 0) ON CONFLICT (id) DO UPDATE SET v = products.v + 1", id)
		require.NoError(t, err)
		mu.Lock()
		keys = append(keys, key)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < 2000; i += 4 {
				commit(i)
			}
		})
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		n := len(keys)
		mu.Unlock()
		return n > 500
	}, 30*time.Second, time.Millisecond)
	first.signal(t, syscall.SIGKILL)
	require.Error(t, first.wait(t, 10*time.Second))
	wg.Wait()
	require.Eventually(t, func() bool { return strings.Contains(second.logs.String(), "cdc reader streaming") },
		30*time.Second, 10*time.Millisecond, "the standby never took over; logs:\n%s", second.logs)
	for i := 2000; i < 2100; i++ {
		commit(i)
	}

	deadline := time.Now().Add(60 * time.Second)
	for left := existing(t, cache.Client, keys...); left > 0; left = existing(t, cache.Client, keys...) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d keys still cached\n--- standby:\n%s\n--- worker:\n%s", left, len(keys), second.logs, w.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range []*proc{second, w} {
		p.signal(t, syscall.SIGTERM)
		require.NoError(t, p.wait(t, 20*time.Second), "logs:\n%s", p.logs)
	}
}

// runProc runs bin to completion and returns its combined output.
func runProc(bin string, env []string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}
