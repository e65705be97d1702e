package worker

import (
	"bytes"
	"io"
	"log/slog"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// The task logger writes what Logger.With wrote: the task's attributes
// first, inside the groups and after the attributes the logger had.
func TestTaskLoggerWritesLikeWith(t *testing.T) {
	t.Parallel()
	write := func(mk func(*slog.Logger) *slog.Logger) string {
		var buf bytes.Buffer
		base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "w")
		l := mk(base)
		l.Debug("applied", "took", "1ms")
		l.With("extra", 1).Warn("retry", "reason", "x")
		l.WithGroup("g").Error("dead", "n", 2)
		return regexp.MustCompile(`time=\S+ `).ReplaceAllString(buf.String(), "")
	}
	want := write(func(l *slog.Logger) *slog.Logger {
		return l.With("task_id", "id1", "kind", "delete_keys", "retry", 2, "queue", "q")
	})
	got := write(func(l *slog.Logger) *slog.Logger { return taskLogger(l, "id1", "delete_keys", 2, "q") })
	require.Equal(t, want, got)

	var buf bytes.Buffer
	info := taskLogger(slog.New(slog.NewTextHandler(&buf, nil)), "id1", "delete_keys", 0, "q")
	require.False(t, debugOn(info))
	require.True(t, debugOn(taskLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "", "", 0, "")))
}

// What a task's logger costs at the default level, where a task that
// succeeds writes nothing.
func BenchmarkTaskLogger(b *testing.B) {
	base := slog.New(slog.NewJSONHandler(io.Discard, nil)).With("component", "worker")
	b.Run("With", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			l := base.With("task_id", "8d7c5f1e-1c1b-4b7f-9b7a-0a6c1d2e3f40", "kind", "invalidator:delete_keys", "retry", i&3, "queue", "invalidator-default")
			l.Debug("keys deleted", "keys", 14)
		}
	})
	b.Run("taskLogger", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			l := taskLogger(base, "8d7c5f1e-1c1b-4b7f-9b7a-0a6c1d2e3f40", "invalidator:delete_keys", i&3, "invalidator-default")
			if debugOn(l) {
				l.Debug("keys deleted", "keys", 14)
			}
		}
	})
}
