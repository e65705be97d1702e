package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// goQuoted matches a Go-quoted string ("...", with escapes), the form in
// which invalidator's errors name keys, patterns and values.
var goQuoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// dataMarkers are the bytes that make a quoted string a key or a pattern
// (user:{42}:profile, product_page:7:*, feed:{42}#ver) rather than a family,
// event or queue name.
const dataMarkers = ":{}#*?[]/@ "

// RedactError hides the data in an error message shown by the dashboard (a
// task's "Last Error"): every quoted string that is a key, a pattern or a
// parameter value becomes its size, as payloads show only their shape.
// Family, event, queue and kind names stay, since they say what failed:
//
//	bump version of family "user_feed" (key "feed:{42}#ver"): ...
//	bump version of family "user_feed" (key <hidden, 13 bytes>): ...
func RedactError(msg string) string {
	var b strings.Builder
	last := 0
	for _, m := range goQuoted.FindAllStringIndex(msg, -1) {
		q := msg[m[0]:m[1]]
		b.WriteString(msg[last:m[0]])
		last = m[1]
		if isDataString(q[1:len(q)-1], msg[:m[0]]) {
			fmt.Fprintf(&b, "<hidden, %d bytes>", len(q)-2)
			continue
		}
		b.WriteString(q)
	}
	b.WriteString(msg[last:])
	return b.String()
}

// isDataString reports whether the quoted text s, preceded by before in the
// message, is data: a key, a pattern or a value.
func isDataString(s, before string) bool {
	if strings.HasPrefix(s, "invalidate:") {
		return false // a task kind
	}
	if strings.ContainsAny(s, dataMarkers) {
		return true
	}
	fields := strings.Fields(strings.ToLower(before))
	if len(fields) == 0 {
		return false
	}
	// The words after which a quoted string is a value.
	switch strings.Trim(fields[len(fields)-1], "(,=") {
	case "key", "keys", "pattern", "value", "values", "first", "param", "attribute":
		return true
	}
	return false
}

// redactErrors rewrites the error messages in asynqmon's API answers
// (their "error_message" fields) with RedactError. asynqmon has a
// formatter for payloads and results, not for errors, so the JSON is
// rewritten on its way out.
func redactErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, apiPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		rec := &bufferedResponse{header: w.Header(), status: http.StatusOK}
		next.ServeHTTP(rec, r)
		body := rec.body.Bytes()
		var doc any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if len(body) > 0 && dec.Decode(&doc) == nil && redactErrorFields(doc) {
			var out bytes.Buffer
			enc := json.NewEncoder(&out)
			enc.SetEscapeHTML(false)
			if enc.Encode(doc) == nil {
				body = out.Bytes()
			}
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.status)
		_, _ = w.Write(body)
	})
}

// redactErrorFields redacts every "error_message" string in v, in place,
// and reports whether it changed any.
func redactErrorFields(v any) bool {
	changed := false
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "error_message" {
				if red := RedactError(s); red != s {
					v[k], changed = red, true
				}
				continue
			}
			changed = redactErrorFields(x) || changed
		}
	case []any:
		for _, x := range v {
			changed = redactErrorFields(x) || changed
		}
	}
	return changed
}

// bufferedResponse keeps a handler's answer so that it can be rewritten.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) WriteHeader(status int)      { b.status = status }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
