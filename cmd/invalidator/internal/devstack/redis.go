package devstack

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Embedded is an in-process Redis (miniredis) for trying invalidator on a
// machine with only Go installed. It is a test double: fine for the demo's
// few thousand keys, not for production or benchmarks.
type Embedded struct {
	m *miniredis.Miniredis
}

// StartEmbedded starts an embedded Redis on a free loopback port.
func StartEmbedded() (*Embedded, error) { return StartEmbeddedOn(0) }

// StartEmbeddedOn starts an embedded Redis on 127.0.0.1:port (0: a free
// port), so that commands typed in another shell can keep one URL across
// runs.
func StartEmbeddedOn(port int) (*Embedded, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(net.JoinHostPort("127.0.0.1", fmt.Sprint(port))); err != nil {
		return nil, fmt.Errorf("start embedded redis: %w", err)
	}
	return &Embedded{m: m}, nil
}

// URL is the redis:// URL other processes can reach it at.
func (e *Embedded) URL() string { return "redis://" + e.m.Addr() + "/0" }

// Client returns a client of the embedded Redis. miniredis answers INFO only
// for its clients and stats sections, and the worker reads "INFO cluster"
// (is this one node of a cluster?) and "INFO server" (the run_id that keys
// family-scan cursors); infoHook answers both as a standalone server would.
func (e *Embedded) Client() redis.UniversalClient {
	c := redis.NewClient(&redis.Options{Addr: e.m.Addr()})
	c.AddHook(infoHook{runID: "miniredis-" + strings.ReplaceAll(e.m.Addr(), ":", "-")})
	return c
}

// Close stops the embedded Redis; its data is gone.
func (e *Embedded) Close() { e.m.Close() }

// infoHook answers INFO server and INFO cluster on the client side.
type infoHook struct{ runID string }

func (infoHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h infoHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if reply, ok := h.info(cmd); ok {
			if sc, ok := cmd.(*redis.StringCmd); ok {
				sc.SetVal(reply)
				return nil
			}
		}
		return next(ctx, cmd)
	}
}

func (infoHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// info returns the synthesized reply to an INFO command miniredis lacks.
func (h infoHook) info(cmd redis.Cmder) (string, bool) {
	args := cmd.Args()
	if len(args) != 2 || !strings.EqualFold(fmt.Sprint(args[0]), "info") {
		return "", false
	}
	switch strings.ToLower(fmt.Sprint(args[1])) {
	case "server":
		return "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\nrun_id:" + h.runID + "\r\n", true
	case "cluster":
		return "# Cluster\r\ncluster_enabled:0\r\n", true
	}
	return "", false
}

var _ net.Addr = (*net.TCPAddr)(nil)
