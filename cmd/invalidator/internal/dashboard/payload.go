package dashboard

import (
	"fmt"

	"github.com/hibiken/asynqmon"

	"github.com/invalidator/invalidator/tasks"
)

// maxResultShown bounds a revealed task result, like a revealed payload.
const maxResultShown = 16 << 10

// payloadFormatter renders task payloads for the UI. Payloads are cache keys
// and family parameters: often user IDs, e-mail addresses or tokens. By
// default only their shape is shown; raw bytes are never shown.
func payloadFormatter(show bool) asynqmon.PayloadFormatter {
	return asynqmon.PayloadFormatterFunc(func(kind string, payload []byte) string {
		if show {
			return RevealPayload(kind, payload)
		}
		return RedactPayload(kind, payload)
	})
}

// resultFormatter renders task results, which invalidator tasks do not write;
// anything found there came from elsewhere and is hidden unless shown.
func resultFormatter(show bool) asynqmon.ResultFormatter {
	return asynqmon.ResultFormatterFunc(func(_ string, result []byte) string {
		switch {
		case len(result) == 0:
			return ""
		case !show:
			return fmt.Sprintf("%d bytes (hidden; --show-payloads reveals)", len(result))
		}
		return tasks.Quote(string(result), maxResultShown)
	})
}

// RedactPayload describes an invalidation task without its data
// (tasks.DescribeRedacted): never parameter or attribute values.
func RedactPayload(kind string, payload []byte) string { return tasks.DescribeRedacted(kind, payload) }

// RevealPayload renders a whole invalidation task (tasks.DescribeAll), for
// --show-payloads.
func RevealPayload(kind string, payload []byte) string { return tasks.DescribeAll(kind, payload) }
