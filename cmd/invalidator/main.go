// Command invalidator runs invalidation workers and operates their queues.
package main

import (
	"context"
	"os"

	"github.com/redis/go-redis/v9"
)

func main() {
	// go-redis logs dial retries through a process-wide logger, straight to
	// stderr; the CLI reports connection failures itself, in one line.
	redis.SetLogger(quietRedisLog{})
	os.Exit(run(context.Background(), os.Args[1:], streams{in: os.Stdin, out: os.Stdout, err: os.Stderr}, os.Getenv))
}

type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}
