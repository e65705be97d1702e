package redisconn

import (
	"net/url"
	"slices"
	"strings"
)

const (
	// mask replaces every secret in output.
	mask = "xxxxx"
	// invalidURL stands for input too broken to show even redacted.
	invalidURL = "<invalid redis URL>"
	// maxSchemeLen bounds the scheme echoed in errors.
	maxSchemeLen = 32
	// minScrubLen is the shortest secret scrub removes from free text:
	// masking every "x" of a one-letter password would garble the message,
	// while Redact still hides it wherever the URL itself is shown.
	minScrubLen = 4
)

// urlParts is a URL split by hand into its raw, still-escaped parts. The
// multi-host forms (h1:1,h2:2) are not URLs net/url accepts, and net/url's
// errors echo their input, so Open and Redact share this splitter.
type urlParts struct {
	scheme      string // lower case
	hasUser     bool
	userinfo    string // everything before the last '@'
	hosts       string // after the userinfo, up to the first '/', '?' or '#'
	path        string // from '/' up to '?' or '#'
	hasQuery    bool
	query       string // after '?', up to '#'
	hasFragment bool
	fragment    string // after '#'
}

// splitURL splits raw into parts. The userinfo ends at the *last* '@', so a
// password holding an unescaped '@', '/', '?' or '#' is still entirely
// inside it, and redacted with it. It fails, with a reason safe to show, only
// when raw does not look like scheme://... at all.
func splitURL(raw string) (urlParts, string) {
	for _, r := range raw {
		if r < 0x20 || r == 0x7f {
			return urlParts{}, "it contains control characters"
		}
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return urlParts{}, `it does not start with a scheme such as "redis://"`
	}
	if !validScheme(scheme) {
		return urlParts{}, "the scheme is not valid"
	}
	p := urlParts{scheme: strings.ToLower(scheme)}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		p.hasUser, p.userinfo, rest = true, rest[:at], rest[at+1:]
	}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		p.hasFragment, p.fragment, rest = true, rest[i+1:], rest[:i]
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		p.hasQuery, p.query, rest = true, rest[i+1:], rest[:i]
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		p.path, rest = rest[i:], rest[:i]
	}
	p.hosts = rest
	return p, ""
}

// validScheme reports whether s is a URL scheme (RFC 3986: a letter, then
// letters, digits, '+', '-' or '.') of reasonable length.
func validScheme(s string) bool {
	if s == "" || len(s) > maxSchemeLen {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return true
}

// Redact returns rawURL with its password replaced by "xxxxx", safe for logs
// and errors: redis://app:s3cret@h:6379/0 gives redis://app:xxxxx@h:6379/0.
// It also masks query options whose name contains "password" and a bare
// userinfo without ':' (redis-cli reads redis://s3cret@h as a password). It
// works on URLs that Open rejects, so errors can show them; input that does
// not look like scheme://... at all gives "<invalid redis URL>", never the
// input itself.
func Redact(rawURL string) string {
	p, reason := splitURL(strings.TrimSpace(rawURL))
	if reason != "" {
		return invalidURL
	}
	var b strings.Builder
	b.WriteString(p.scheme + "://")
	if p.hasUser {
		if user, _, hasPass := strings.Cut(p.userinfo, ":"); hasPass {
			b.WriteString(user + ":" + mask + "@")
		} else if p.userinfo != "" {
			b.WriteString(mask + "@")
		} else {
			b.WriteString("@")
		}
	}
	b.WriteString(p.hosts + p.path)
	if p.hasQuery {
		b.WriteString("?" + redactQuery(p.query))
	}
	if p.hasFragment {
		// A fragment means nothing to Redis: whatever it is, do not show it.
		b.WriteString("#" + mask)
	}
	return b.String()
}

// redactQuery masks the values of options named like passwords, keeping the
// rest of the query as written.
func redactQuery(q string) string {
	fields := strings.Split(q, "&")
	for i, f := range fields {
		if key, _, ok := strings.Cut(f, "="); ok && secretKey(key) {
			fields[i] = key + "=" + mask
		}
	}
	return strings.Join(fields, "&")
}

// secretKey reports whether a query option name (raw or decoded) holds a secret.
func secretKey(key string) bool {
	if k, err := url.QueryUnescape(key); err == nil {
		key = k
	}
	return strings.Contains(strings.ToLower(key), "password")
}

// secrets returns the secrets in rawURL, raw and decoded, longest first, so
// that scrub can remove them from text that did not come from Redact (a
// defence in depth: such text is not known to quote them).
func secrets(rawURL string) []string {
	p, reason := splitURL(strings.TrimSpace(rawURL))
	if reason != "" {
		return nil
	}
	var out []string
	add := func(raw string) {
		out = append(out, raw)
		if dec, err := url.PathUnescape(raw); err == nil {
			out = append(out, dec)
		}
		if dec, err := url.QueryUnescape(raw); err == nil {
			out = append(out, dec)
		}
	}
	if p.hasUser {
		if _, pass, ok := strings.Cut(p.userinfo, ":"); ok {
			add(pass)
		} else {
			add(p.userinfo)
		}
	}
	for f := range strings.SplitSeq(p.query, "&") {
		if key, val, ok := strings.Cut(f, "="); ok && secretKey(key) {
			add(val)
		}
	}
	out = slices.DeleteFunc(out, func(s string) bool { return len(s) < minScrubLen })
	slices.SortFunc(out, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	return slices.Compact(out)
}

// scrub replaces every secret in msg with the mask.
func scrub(msg string, secrets []string) string {
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, mask)
	}
	return msg
}
