package worker

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// ErrFault is the error Faults gives the commands it fails.
var ErrFault = errors.New("injected Redis failure (test)")

// Faults is a go-redis hook that fails the commands a predicate picks, the
// way a Redis that answers with errors does: a picked command is not sent,
// and a pipeline holding one fails whole, every command with ErrFault. It
// is shared by this package's internal and external tests (exported only
// in tests).
type Faults struct {
	pick atomic.Pointer[func(redis.Cmder) bool] // nil: nothing fails
	hits atomic.Int64                           // commands failed so far
}

// Fail makes every command that pick chooses fail from now on.
func (f *Faults) Fail(pick func(redis.Cmder) bool) { f.pick.Store(&pick) }

// Heal lets every command through again.
func (f *Faults) Heal() { f.pick.Store(nil) }

// Hits reports how many commands have failed.
func (f *Faults) Hits() int64 { return f.hits.Load() }

func (f *Faults) picks(c redis.Cmder) bool {
	p := f.pick.Load()
	return p != nil && (*p)(c)
}

func (f *Faults) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (f *Faults) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if f.picks(cmd) {
			f.hits.Add(1)
			cmd.SetErr(ErrFault)
			return ErrFault
		}
		return next(ctx, cmd)
	}
}

func (f *Faults) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if f.picks(c) {
				f.hits.Add(1)
				for _, c := range cmds {
					c.SetErr(ErrFault)
				}
				return ErrFault
			}
		}
		return next(ctx, cmds)
	}
}

// Named picks the commands with one of these (lower-case) names; a Lua
// script run is "evalsha" (or "eval").
func Named(names ...string) func(redis.Cmder) bool {
	return func(c redis.Cmder) bool {
		for _, n := range names {
			if c.Name() == n {
				return true
			}
		}
		return false
	}
}

// Carrying picks the commands with an argument that contains s: asynq's
// enqueue script, for one, carries the encoded task with its type name.
func Carrying(s string) func(redis.Cmder) bool {
	return func(c redis.Cmder) bool {
		for _, a := range c.Args() {
			switch v := a.(type) {
			case string:
				if strings.Contains(v, s) {
					return true
				}
			case []byte:
				if strings.Contains(string(v), s) {
					return true
				}
			}
		}
		return false
	}
}
