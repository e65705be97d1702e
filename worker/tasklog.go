package worker

import (
	"context"
	"log/slog"
)

// taskLogger returns log with a task's attributes, formatted only for the
// records that are written. Logger.With formats them at once (text and
// JSON handlers pre-render With attributes), for every task, though at the
// default level a task that succeeds logs nothing.
func taskLogger(log *slog.Logger, id, kind string, retry int, queue string) *slog.Logger {
	return slog.New(&taskHandler{Handler: log.Handler(), attrs: [4]slog.Attr{
		slog.String("task_id", id), slog.String("kind", kind), slog.Int("retry", retry), slog.String("queue", queue),
	}})
}

// taskHandler adds attrs to each record before the record's own, where
// With would have put them.
type taskHandler struct {
	slog.Handler
	attrs [4]slog.Attr
}

func (h *taskHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(h.attrs[:]...)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h *taskHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return h.Handler.WithAttrs(h.attrs[:]).WithAttrs(attrs)
}

func (h *taskHandler) WithGroup(name string) slog.Handler {
	return h.Handler.WithAttrs(h.attrs[:]).WithGroup(name)
}

// debugOn reports whether log writes debug records: the per-task debug
// lines build their arguments only then.
func debugOn(log *slog.Logger) bool { return log.Enabled(context.Background(), slog.LevelDebug) }
