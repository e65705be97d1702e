package dashboard

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynqmon"

	"github.com/invalidator/invalidator/tasks"
)

const (
	// maxKeyShown bounds one key or value in the UI; keys can be 16 KiB.
	maxKeyShown = 64
	// maxPayloadShown bounds a revealed payload: a task may hold 1000 keys.
	maxPayloadShown = 16 << 10
)

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
		return quote(string(result), maxPayloadShown)
	})
}

// RedactPayload describes an invalidation task without its data: the kind,
// the key count and first key, the family and its parameter names, or the
// event name and its attribute names (never parameter or attribute
// values). A payload that does not decode shows as "undecodable (N bytes)".
func RedactPayload(kind string, payload []byte) string {
	t, err := tasks.Unmarshal(kind, payload)
	if err != nil {
		return undecodable(payload)
	}
	switch t := t.(type) {
	case tasks.DeleteKeys:
		if len(t.Keys) == 1 {
			return fmt.Sprintf("%s: 1 key %s", kind, quote(t.Keys[0], maxKeyShown))
		}
		return fmt.Sprintf("%s: %d keys, first %s (others hidden)", kind, len(t.Keys), quote(t.Keys[0], maxKeyShown))
	case tasks.DeleteFamily:
		return redactNamed(kind, "family", t.Family, t.Params)
	case tasks.BumpVersion:
		return redactNamed(kind, "family", t.Family, t.Params)
	case tasks.Event:
		return redactNamed(kind, "event", t.Name, t.Attrs)
	}
	return undecodable(payload)
}

// redactNamed describes a family (with its parameters) or an event (with its
// attributes): the name and the parameter names, never their values.
func redactNamed(kind, what, name string, params map[string]string) string {
	s := fmt.Sprintf("%s: %s %s", kind, what, quote(name, maxKeyShown))
	if len(params) == 0 {
		return s
	}
	return fmt.Sprintf("%s, %s (values hidden)", s, strings.Join(sortedNames(params), ", "))
}

// RevealPayload renders a whole invalidation task: every key (up to 16 KiB
// of output), every family parameter or event attribute with its value, the
// target and the enqueue time. Keys are quoted Go-style, so binary bytes
// show as escapes. A payload that does not decode shows its size and the
// reason, never its bytes.
func RevealPayload(kind string, payload []byte) string {
	t, err := tasks.Unmarshal(kind, payload)
	if err != nil {
		return fmt.Sprintf("%s: %v", undecodable(payload), err)
	}
	var b strings.Builder
	var target string
	var at time.Time
	switch t := t.(type) {
	case tasks.DeleteKeys:
		fmt.Fprintf(&b, "%s: %d keys [", kind, len(t.Keys))
		for i, k := range t.Keys {
			if b.Len() > maxPayloadShown {
				fmt.Fprintf(&b, " ... %d more", len(t.Keys)-i)
				break
			}
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(quote(k, maxKeyShown))
		}
		b.WriteByte(']')
		target, at = t.Target, t.EnqueuedAt
	case tasks.DeleteFamily:
		revealNamed(&b, kind, "family", t.Family, t.Params)
		target, at = t.Target, t.EnqueuedAt
	case tasks.BumpVersion:
		revealNamed(&b, kind, "family", t.Family, t.Params)
		target, at = t.Target, t.EnqueuedAt
	case tasks.Event:
		revealNamed(&b, kind, "event", t.Name, t.Attrs)
		target, at = t.Target, t.EnqueuedAt
	default:
		// A kind tasks knows but this switch does not: say so rather than
		// print an empty string.
		return fmt.Sprintf("%s: %s", kind, undecodable(payload))
	}
	if target != "" {
		fmt.Fprintf(&b, ", target %s", quote(target, maxKeyShown))
	}
	if !at.IsZero() {
		fmt.Fprintf(&b, ", enqueued %s", at.UTC().Format(time.RFC3339Nano))
	}
	return b.String()
}

func revealNamed(b *strings.Builder, kind, what, name string, params map[string]string) {
	fmt.Fprintf(b, "%s: %s %s", kind, what, quote(name, maxKeyShown))
	for _, name := range sortedNames(params) {
		fmt.Fprintf(b, " %s=%s", name, quote(params[name], maxKeyShown))
	}
}

func undecodable(payload []byte) string {
	return fmt.Sprintf("undecodable (%d bytes)", len(payload))
}

// quote quotes s Go-style (binary-safe, one line), cut after limit bytes on a
// rune boundary when one is near, saying how long s was.
func quote(s string, limit int) string {
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	cut := limit
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		cut = limit
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

func sortedNames(params map[string]string) []string {
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
