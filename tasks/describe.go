package tasks

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxShown bounds how many bytes of one key or value Describe prints.
const maxShown = 64

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
		return fmt.Sprintf("unknown kind %s (%d bytes)", quote(kind), len(payload))
	}
	t, err := decode(kind, payload)
	if err != nil {
		return fmt.Sprintf("undecodable payload (%d bytes): %v", len(payload), err)
	}
	var b strings.Builder
	switch t := t.(type) {
	case DeleteKeys:
		if len(t.Keys) == 1 {
			fmt.Fprintf(&b, "1 key %s", quote(t.Keys[0]))
		} else {
			fmt.Fprintf(&b, "%d keys, first %s", len(t.Keys), quote(t.Keys[0]))
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
		return quote(s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.:@/", c) >= 0) {
			return quote(s)
		}
	}
	return s
}

// quote quotes s Go-style (binary-safe, single line), keeping at most
// maxShown bytes and saying how long s was when it cuts.
func quote(s string) string {
	if len(s) <= maxShown {
		return strconv.Quote(s)
	}
	cut := maxShown
	// Step back to a rune boundary so a multi-byte character is not shown
	// as escapes; binary keys with no boundary nearby are cut where they are.
	for i := 0; i < utf8.UTFMax-1 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		cut = maxShown
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cut]), len(s))
}
