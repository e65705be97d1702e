// Package pgtest gives tests a real PostgreSQL: a private server per test
// binary, initdb'd into a temporary directory and listening on a free
// loopback port, with one database per test so parallel tests never share
// tables.
//
// A package opts in from its TestMain; the server starts lazily (only when a
// test asks for a database) and is stopped, and its directory removed, when
// the tests end:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestWrite(t *testing.T) {
//		t.Parallel()
//		db := pgtest.NewDB(t) // CREATE DATABASE for this test, dropped at cleanup
//		_, err := db.Pool.Exec(t.Context(), `CREATE TABLE t (id int)`)
//		require.NoError(t, err)
//		// db.DSN (postgres://postgres@127.0.0.1:PORT/NAME) can be handed to
//		// database/sql or a CLI subprocess.
//	}
//
// A package that needs Redis too nests the two harnesses:
//
//	func TestMain(m *testing.M) {
//		os.Exit(pgtest.Run(func() int { return redistest.Main(m) }))
//	}
//
// The server is never the machine's own PostgreSQL: it needs the server
// binaries (initdb and postgres), found through INVALIDATOR_TEST_PG_BINDIR,
// `pg_config --bindir`, /usr/lib/postgresql/*/bin (Debian's layout, newest
// version first) and PATH, in that order. Without them a test that asks for a
// database is skipped with instructions (apt-get install postgresql), except
// when CI is set: there the skip would hide the tests, so it is a failure.
//
// The server is tuned for tests, not durability: fsync off, no full page
// writes. It runs with wal_level=logical so tests can use logical
// replication, and max_connections=200 for parallel tests with pools. initdb
// and postgres refuse to run as root, so a root test binary runs them as the
// "postgres" OS user (which the Debian package creates).
//
// On Linux the server is started in its own process group with a
// parent-death signal, so it does not outlive a test binary killed on
// timeout; its backends notice their postmaster's death and exit.
package pgtest
