package worker

import (
	"log/slog"

	"github.com/hibiken/asynq"
)

// AsynqLogger routes the log lines of an asynq server that is not a Worker
// (a baseline, a test) into l, as a Worker routes its own: asynq's default
// logger writes to stderr, where its lines would land in a command's output.
func AsynqLogger(l *slog.Logger) asynq.Logger { return asynqLogger{l: l} }
