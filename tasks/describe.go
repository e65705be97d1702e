package tasks

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	// maxShown bounds how many bytes of one key or value a description
	// prints; keys can be 16 KiB.
	maxShown = 64
	// maxRevealed bounds a DescribeAll: a task may hold 1000 keys.
	maxRevealed = 16 << 10
)

// The three descriptions of a task share this file's quoting and ordering:
// Describe for logs and the CLI, DescribeRedacted and DescribeAll for the
// dashboard, which hides parameter values unless told to show them.

// Describe returns a short, single-line summary of a task for dashboards and
// the CLI, for instance:
//
//	3 keys, first "user:1"
//	1 key "user:1" (target sessions)
//	family=user_profile id=42
//	event=product.updated id=7
//	undecodable payload (17 bytes): key 0: length 70000 exceeds remaining 12 bytes: malformed payload
//
// Keys are quoted Go-style, so binary bytes show as escapes, and cut after 64
// bytes. Describe never fails: a payload Unmarshal would refuse is described
// with the reason.
func Describe(kind string, payload []byte) string {
	if !IsKind(kind) {
		return fmt.Sprintf("unknown kind %s (%d bytes)", Quote(kind, maxShown), len(payload))
	}
	t, err := decode(kind, payload)
	if err != nil {
		return fmt.Sprintf("undecodable payload (%d bytes): %v", len(payload), err)
	}
	var b strings.Builder
	switch t := t.(type) {
	case DeleteKeys:
		if len(t.Keys) == 1 {
			fmt.Fprintf(&b, "1 key %s", Quote(t.Keys[0], maxShown))
		} else {
			fmt.Fprintf(&b, "%d keys, first %s", len(t.Keys), Quote(t.Keys[0], maxShown))
		}
		writeTarget(&b, t.Target)
	case DeleteFamily:
		writeFamily(&b, t.Family, t.Params)
		writeTarget(&b, t.Target)
	case BumpVersion:
		writeFamily(&b, t.Family, t.Params)
		writeTarget(&b, t.Target)
	case Event:
		b.WriteString("event=")
		b.WriteString(quoteIfNeeded(t.Name))
		writeParams(&b, t.Attrs)
		writeTarget(&b, t.Target)
	}
	return b.String()
}

func writeFamily(b *strings.Builder, family string, params map[string]string) {
	b.WriteString("family=")
	b.WriteString(quoteIfNeeded(family))
	writeParams(b, params)
}

func writeParams(b *strings.Builder, params map[string]string) {
	for _, name := range sortedNames(params) {
		// Names are validated as [A-Za-z0-9_]: no quoting needed.
		fmt.Fprintf(b, " %s=%s", name, quoteIfNeeded(params[name]))
	}
}

func writeTarget(b *strings.Builder, target string) {
	if target != "" {
		fmt.Fprintf(b, " (target %s)", target)
	}
}

// quoteIfNeeded leaves short, plain values bare (user_profile, 42,
// a@b.example) and quotes anything else.
func quoteIfNeeded(s string) string {
	if s == "" || len(s) > maxShown {
		return Quote(s, maxShown)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.:@/", c) >= 0) {
			return Quote(s, maxShown)
		}
	}
	return s
}

// quote is Quote at the length a description shows of one key or value.
func quote(s string) string { return Quote(s, maxShown) }

// Quote quotes s Go-style (binary-safe, one line), keeping at most limit
// bytes, cut on a rune boundary when one is near, and saying how long s was
// when it cuts.
func Quote(s string, limit int) string {
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	cut := limit
	// Step back to a rune boundary so a multi-byte character is not shown
	// as escapes; binary keys with no boundary nearby are cut where they are.
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		cut = limit
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

// DescribeRedacted describes a task without its data: the kind, the key
// count and first key, the family and its parameter names, or the event
// name and its attribute names (never parameter or attribute values). A
// payload that does not decode shows as "undecodable (N bytes)".
func DescribeRedacted(kind string, payload []byte) string {
	t, err := Unmarshal(kind, payload)
	if err != nil {
		return undecodable(payload)
	}
	switch t := t.(type) {
	case DeleteKeys:
		if len(t.Keys) == 1 {
			return fmt.Sprintf("%s: 1 key %s", kind, Quote(t.Keys[0], maxShown))
		}
		return fmt.Sprintf("%s: %d keys, first %s (others hidden)", kind, len(t.Keys), Quote(t.Keys[0], maxShown))
	case DeleteFamily:
		return redactNamed(kind, "family", t.Family, t.Params)
	case BumpVersion:
		return redactNamed(kind, "family", t.Family, t.Params)
	case Event:
		return redactNamed(kind, "event", t.Name, t.Attrs)
	}
	return undecodable(payload)
}

// redactNamed describes a family (with its parameters) or an event (with its
// attributes): the name and the parameter names, never their values.
func redactNamed(kind, what, name string, params map[string]string) string {
	s := fmt.Sprintf("%s: %s %s", kind, what, Quote(name, maxShown))
	if len(params) == 0 {
		return s
	}
	return fmt.Sprintf("%s, %s (values hidden)", s, strings.Join(sortedNames(params), ", "))
}

// DescribeAll renders a whole task: every key (up to 16 KiB of output),
// every family parameter or event attribute with its value, the target and
// the enqueue time. A payload that does not decode shows its size and the
// reason, never its bytes.
func DescribeAll(kind string, payload []byte) string {
	t, err := Unmarshal(kind, payload)
	if err != nil {
		return fmt.Sprintf("%s: %v", undecodable(payload), err)
	}
	var b strings.Builder
	var target string
	var at time.Time
	switch t := t.(type) {
	case DeleteKeys:
		fmt.Fprintf(&b, "%s: %d keys [", kind, len(t.Keys))
		for i, k := range t.Keys {
			if b.Len() > maxRevealed {
				fmt.Fprintf(&b, " ... %d more", len(t.Keys)-i)
				break
			}
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(Quote(k, maxShown))
		}
		b.WriteByte(']')
		target, at = t.Target, t.EnqueuedAt
	case DeleteFamily:
		revealNamed(&b, kind, "family", t.Family, t.Params)
		target, at = t.Target, t.EnqueuedAt
	case BumpVersion:
		revealNamed(&b, kind, "family", t.Family, t.Params)
		target, at = t.Target, t.EnqueuedAt
	case Event:
		revealNamed(&b, kind, "event", t.Name, t.Attrs)
		target, at = t.Target, t.EnqueuedAt
	default:
		// A kind Unmarshal knows but this switch does not: say so rather
		// than print an empty string.
		return fmt.Sprintf("%s: %s", kind, undecodable(payload))
	}
	if target != "" {
		fmt.Fprintf(&b, ", target %s", Quote(target, maxShown))
	}
	if !at.IsZero() {
		fmt.Fprintf(&b, ", enqueued %s", at.UTC().Format(time.RFC3339Nano))
	}
	return b.String()
}

func revealNamed(b *strings.Builder, kind, what, name string, params map[string]string) {
	fmt.Fprintf(b, "%s: %s %s", kind, what, Quote(name, maxShown))
	for _, name := range sortedNames(params) {
		fmt.Fprintf(b, " %s=%s", name, Quote(params[name], maxShown))
	}
}

func undecodable(payload []byte) string {
	return fmt.Sprintf("undecodable (%d bytes)", len(payload))
}
