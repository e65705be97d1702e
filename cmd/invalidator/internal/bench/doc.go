// Package bench is the load generator behind `invalidator bench`: it runs
// invalidation scenarios against a real Redis and measures, in the same run,
// the baselines they are judged against.
//
// Scenarios:
//   - Lag: invalidations at a fixed rate; the time from the enqueue call to
//     the key's deletion, seen through keyspace notifications.
//   - Throughput: producers calling DeleteKeys as fast as they can.
//   - Family: a pattern delete of a family inside a larger keyspace.
//   - Outbox: on a PostgreSQL too, what one transactional outbox write adds
//     to a small transaction next to an enqueue after its commit, the
//     commit -> key-gone lag through the relay, and the relay's throughput.
//
// Baselines of the Redis scenarios, each measured on the same server right
// before the scenario:
//   - raw_unlink: pipelined multi-key UNLINKs of 1000 keys, the physical limit;
//   - del_per_key: one DEL per round trip;
//   - naive_asynq: one asynq task per key, asynq's default server settings.
//
// Example:
//
//	res, err := bench.Throughput(ctx, bench.Env{Redis: rdb}, bench.ThroughputOptions{Producers: 32, KeysPerCall: 1})
//	fmt.Println(res.KeysPerSec, res.Ratios["raw_unlink"])
package bench
