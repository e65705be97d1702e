package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/internal/pgtest"
	"github.com/invalidator/invalidator/internal/redistest"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/worker"
)

// auditClusterPolicy puts a delete family and a version family under the
// test's prefix of the shared cluster, on a queue of their own.
const auditClusterPolicy = `version: 1
default_class: standard
classes:
  standard: {queue: PREFIX-standard}
  critical: {queue: PREFIX-critical, ttl: 1h}
families:
  product:
    template: "PREFIX:product:{id}"
    params: {id: {match: '[0-9]+'}}
    class: critical
    audit:
      query: "SELECT row_to_json(p) FROM products p WHERE id = @id"
      fields: [price]
      recheck_after: 10ms
  feed:
    template: "PREFIX:feed:{id}"
    params: {id: {match: '[0-9]+'}}
    strategy: version
    class: critical
    audit:
      query: "SELECT row_to_json(p) FROM products p WHERE id = @id"
      fields: [price]
      recheck_after: 10ms
`

// On the harness's 3-master cluster, as both queue and cache Redis: n
// stale among m entries of a delete family and of a version family (whose
// older versions hold stale data no reader reaches) are found exactly,
// and --heal deletes exactly the stale keys and bumps exactly the stale
// entities' versions.
func TestAuditOnAClusterFindsAndHealsExactlyThePlantedStaleEntries(t *testing.T) {
	t.Parallel()
	const m, n = 120, 4
	ctx := t.Context()
	prefix := redistest.Prefix(t)
	body := strings.ReplaceAll(auditClusterPolicy, "PREFIX", prefix)
	pol, err := keyspec.Parse("p.yaml", []byte(body))
	require.NoError(t, err)
	pg := pgtest.NewDB(t)
	_, err = pg.Pool.Exec(ctx, fmt.Sprintf(`CREATE TABLE products (id bigint PRIMARY KEY, price int);
		INSERT INTO products SELECT i, 100 + i FROM generate_series(1, %d) i`, m))
	require.NoError(t, err)
	cl := redistest.Cluster(t)

	var staleKeys, staleVersions []string
	versions := map[string]string{} // version key -> version planted
	for i := 1; i <= m; i++ {
		price := 100 + i
		stale := i%(m/n) == 0 && len(staleKeys) < n
		if stale {
			price = 1
		}
		v := cacheaside.EncodeValue(fmt.Appendf(nil, `{"price": %d, "id": %d}`, price, i))
		params := map[string]string{"id": fmt.Sprint(i)}
		key, err := pol.Families["product"].Key(params)
		require.NoError(t, err)
		require.NoError(t, cl.Set(ctx, key, v, 0).Err())
		feed := pol.Families["feed"]
		vkey, err := feed.VersionKey(params)
		require.NoError(t, err)
		data, err := feed.DataKey(params, 1000)
		require.NoError(t, err)
		old, err := feed.DataKey(params, 999)
		require.NoError(t, err)
		require.NoError(t, cl.Set(ctx, vkey, "1000", 0).Err())
		require.NoError(t, cl.Set(ctx, data, v, 0).Err())
		require.NoError(t, cl.Set(ctx, old, cacheaside.EncodeValue([]byte(`{"price": 0}`)), 0).Err())
		versions[vkey] = "1000"
		if stale {
			staleKeys = append(staleKeys, key)
			staleVersions = append(staleVersions, vkey)
		}
	}
	require.Len(t, staleKeys, n)
	url := "redis+cluster://" + strings.Join(redistest.ClusterAddrs(t), ",")
	env := map[string]string{envRedisURL: url, envPolicy: writePolicy(t, body), envAuditDSN: pg.DSN}

	r := invoke(t, env, "", "audit", "--sample", "1000", "--json")
	require.Equal(t, exitFailure, r.code, r.stderr)
	out := auditJSON(t, r)
	require.Len(t, out.Families, 2)
	for _, rep := range out.Families {
		require.Equal(t, m, rep.Sampled, rep.Family)
		require.Equal(t, n, rep.Inconsistent, rep.Family)
		require.Equal(t, m-n, rep.Consistent, rep.Family)
	}

	// A worker on the cluster serves the families' class queue.
	w, err := worker.New(worker.Config{Queue: cl, Policy: pol, PollInterval: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() { cancel(); <-done })

	r = invoke(t, env, "", "audit", "--sample", "1000", "--heal")
	require.Equal(t, exitFailure, r.code, r.stderr)
	require.Contains(t, r.stdout, fmt.Sprintf("healed: enqueued the invalidation of %d stale keys", 2*n))
	require.Eventually(t, func() bool {
		if cl.Exists(ctx, staleKeys...).Val() != 0 {
			return false
		}
		for _, vkey := range staleVersions {
			if cl.Get(ctx, vkey).Val() == versions[vkey] {
				return false
			}
		}
		return true
	}, 30*time.Second, 5*time.Millisecond, "the healed keys were never invalidated")
	for i := 1; i <= m; i++ {
		params := map[string]string{"id": fmt.Sprint(i)}
		key, _ := pol.Families["product"].Key(params)
		vkey, _ := pol.Families["feed"].VersionKey(params)
		stale := slices.Contains(staleKeys, key)
		require.Equal(t, !stale, cl.Exists(ctx, key).Val() == 1, "only the stale keys were deleted: %s", key)
		require.Equal(t, !stale, cl.Get(ctx, vkey).Val() == "1000", "only the stale entities were bumped: %s", vkey)
	}

	r = invoke(t, env, "", "audit", "--sample", "1000", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	for _, rep := range auditJSON(t, r).Families {
		require.Equal(t, m-n, rep.Consistent, rep.Family)
		require.Zero(t, rep.Inconsistent, rep.Family)
	}
}
