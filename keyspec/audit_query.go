package keyspec

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// AuditQueryParams returns the distinct @name placeholders of an audit
// query, in order of first use. It reads the query the way pgx.NamedArgs
// rewrites it, since pgx is what binds the names: a placeholder is '@'
// followed by a letter or '_', then letters, digits and '_'; nothing inside
// '...', E'...', "...", $tag$...$tag$, -- and /* */ comments (nested)
// counts; an '@' not followed by a name (the @> and @ operators) is not a
// placeholder; and like pgx it stops reading at invalid UTF-8 (the policy
// refuses such a query).
func AuditQueryParams(query string) []string {
	var names []string
	s := query
	i := 0
	// next decodes the rune at i; ok is false at the end or at invalid
	// UTF-8, where pgx stops.
	next := func() (r rune, w int, ok bool) {
		r, w = utf8.DecodeRuneInString(s[i:])
		return r, w, !(r == utf8.RuneError && w != 3)
	}
	peek := func() rune {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return r
	}
	// skipQuoted skips to past the closing quote q, where a doubled q is
	// a literal q; backslash escapes the next rune when escapes is set.
	skipQuoted := func(q rune, escapes bool) bool {
		for {
			r, w, ok := next()
			if !ok {
				return false
			}
			i += w
			switch {
			case escapes && r == '\\':
				_, w := utf8.DecodeRuneInString(s[i:])
				i += w
			case r == q:
				if peek() != q {
					return true
				}
				i++
			}
		}
	}
	for {
		r, w, ok := next()
		if !ok {
			return names
		}
		i += w
		switch r {
		case 'e', 'E':
			if peek() == '\'' {
				i++
				if !skipQuoted('\'', true) {
					return names
				}
				continue
			}
		case '\'', '"':
			if !skipQuoted(r, false) {
				return names
			}
			continue
		case '$':
			if n, ok := dollarTag(s[i:]); ok {
				tag := s[i-1 : i+n+1]
				i += n + 1
				end := strings.Index(s[i:], tag)
				if end < 0 {
					return names
				}
				i += end + len(tag)
				continue
			}
		case '@':
			if c := peek(); isASCIILetter(c) || c == '_' {
				start := i
				for i < len(s) && (isASCIILetter(rune(s[i])) || s[i] >= '0' && s[i] <= '9' || s[i] == '_') {
					i++
				}
				if name := s[start:i]; !slices.Contains(names, name) {
					names = append(names, name)
				}
				continue
			}
		case '-':
			if peek() == '-' {
				i++
				for {
					r, w, ok := next()
					if !ok {
						return names
					}
					i += w
					if r == '\n' || r == '\r' {
						break
					}
				}
				continue
			}
		case '/':
			if peek() == '*' {
				i++
				if !skipComment(s, &i) {
					return names
				}
				continue
			}
		}
		// An identifier is one token: a '$' inside it starts no
		// dollar-quoted string, an 'e' inside it no E'' string.
		if isIdentStart(r) {
			for i < len(s) {
				c, w := utf8.DecodeRuneInString(s[i:])
				if c == utf8.RuneError && w != 3 || !(isIdentStart(c) || c >= '0' && c <= '9' || c == '$') {
					break
				}
				i += w
			}
		}
	}
}

// skipComment skips a /* */ comment, nested ones included, from just after
// its opening; it returns false at the end or at invalid UTF-8.
func skipComment(s string, i *int) bool {
	nested := 0
	for {
		r, w := utf8.DecodeRuneInString(s[*i:])
		if r == utf8.RuneError && w != 3 {
			return false
		}
		*i += w
		c, _ := utf8.DecodeRuneInString(s[*i:])
		switch {
		case r == '/' && c == '*':
			*i++
			nested++
		case r == '*' && c == '/':
			*i++
			if nested == 0 {
				return true
			}
			nested--
		}
	}
}

// dollarTag scans a dollar quote's optional tag and closing '$' from just
// after the opening '$', returning the tag's length.
func dollarTag(s string) (int, bool) {
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == '$' {
			return i, true
		}
		if r == utf8.RuneError && w != 3 || !(isIdentStart(r) || i > 0 && r >= '0' && r <= '9') {
			return 0, false
		}
		i += w
	}
	return 0, false
}

func isASCIILetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

func isIdentStart(r rune) bool { return isASCIILetter(r) || r == '_' || r >= 0x80 }
