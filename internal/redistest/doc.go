// Package redistest gives tests a real Redis: a private redis-server per test
// binary, with one isolated logical database per test, and a private 3-master
// Redis Cluster for tests that need cluster semantics.
//
// A package opts in from its TestMain; Main starts servers lazily (only when a
// test asks for one) and stops every process it started when the tests end:
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
//
//	func TestDelete(t *testing.T) {
//		t.Parallel()
//		db := redistest.NewDB(t) // fresh, flushed, not shared with any other test
//		require.NoError(t, db.Client.Set(t.Context(), "user:1", "x", 0).Err())
//		// db.URL (redis://127.0.0.1:PORT/N) can be handed to a CLI subprocess.
//	}
//
//	func TestClusterScan(t *testing.T) {
//		c := redistest.Cluster(t)  // shared by the test binary: isolate by key prefix
//		p := redistest.Prefix(t)   // unique, safe in keys and asynq queue names
//		require.NoError(t, c.Set(t.Context(), p+":{user}:1", "x", 0).Err())
//	}
//
// Isolation. The private server runs with `--databases 10000` and NewDB hands
// out database indexes from a counter, so parallel tests never share data.
// Cluster mode has only database 0, so tests sharing the cluster separate
// themselves by Prefix.
//
// Nothing depends on port 6379 or on a Redis already running: ports are picked
// free on 127.0.0.1 and redis-server must be on PATH (apt-get install
// redis-server). To run the tests against an existing server instead, set
// INVALIDATOR_TEST_REDIS_URL (for example redis://127.0.0.1:6379/0); the tests
// then FLUSH every database of that server in turn, so never point it at a
// server holding data you want to keep. The cluster is always private.
//
// On Linux every redis-server is started in its own process group with a
// parent-death signal, so none outlives the test binary, even when a test
// panics or go test kills the binary on timeout.
package redistest
