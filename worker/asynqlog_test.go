package worker

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

// asynq's lifecycle lines retell the worker's own and stay out of an
// info-level log; a task pushed back at shutdown stays in it.
func TestAsynqLoggerInfo(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	l := AsynqLogger(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo})))
	for _, msg := range []string{"Starting processing", "Starting graceful shutdown", "Waiting for all workers to finish...",
		"All workers have finished", "Exiting"} {
		l.Info(msg)
	}
	require.Empty(t, out.String())
	l.Info("Pushed task id=abc back to queue")
	l.Warn("Failed to write server state data")
	require.Contains(t, out.String(), `level=INFO msg="Pushed task id=abc back to queue"`)
	require.Contains(t, out.String(), `level=WARN msg="Failed to write server state data"`)

	out.Reset()
	debug := AsynqLogger(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	debug.Info("Starting processing")
	require.Contains(t, out.String(), `level=DEBUG msg="Starting processing"`, "still there at --log-level debug")
}
