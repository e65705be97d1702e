package keyspec

import (
	"fmt"
	"strings"
)

// Pattern returns a Redis SCAN MATCH pattern for the family's keys. params
// may be a subset of the template's parameters: each one left out becomes
// the wildcard '*' ("{*}" for the hash-tag parameter). Given values, and the
// template's literal text, are escaped with EscapeGlob, so a user id of "*"
// matches only the literal key "user:\*:profile", never every user.
//
// Unknown parameters and empty values are refused as in Key. A pattern is
// refused with ErrUnsafePattern when the literal text before its first
// wildcard is empty, or ends in a letter, digit or '_' rather than a
// delimiter such as ':': "*" would match every key and "user*" would also
// match "users:...". The error names the parameter to fix. With every
// parameter given the pattern matches exactly the one key Key renders.
// Given values must match their declarations (ErrInvalidParam).
//
// A '*' matches any bytes, ':' too, so "product:*" also matches the keys
// of a family "product:{id}:details". Filter what SCAN returns through
// Family.Matcher, which holds the parameters' declarations.
//
// A version family has no pattern (ErrVersioned): its data lives at
// DataKey keys, which the template's pattern would not match.
func (f *Family) Pattern(params map[string]string) (string, error) {
	if f.Strategy == StrategyVersion {
		return "", fmt.Errorf("pattern family %q: %w: a pattern delete would match none of its data keys; invalidate it by advancing its version",
			f.Name, ErrVersioned)
	}
	return f.pattern(params)
}

// pattern is Pattern for any strategy: the glob of the rendered template.
func (f *Family) pattern(params map[string]string) (string, error) {
	if err := f.checkParams("pattern", params, false); err != nil {
		return "", err
	}
	var pat strings.Builder
	var prefix strings.Builder // unescaped text before the first wildcard
	wild := false
	addLiteral := func(s string) {
		pat.WriteString(EscapeGlob(s))
		if !wild {
			prefix.WriteString(s)
		}
	}
	for _, s := range f.Template.segs {
		if !s.isParam {
			addLiteral(s.text)
			continue
		}
		tagged := s.text == f.HashTag
		if tagged {
			addLiteral("{")
		}
		if v, ok := params[s.text]; ok {
			addLiteral(v)
		} else {
			if !wild {
				if err := f.checkPrefix(prefix.String(), s.text); err != nil {
					return "", err
				}
				wild = true
			}
			pat.WriteByte('*')
		}
		if tagged {
			addLiteral("}")
		}
	}
	return pat.String(), nil
}

// checkPrefix refuses a pattern whose literal prefix before the wildcard for
// param cannot confine it to this family's keys.
func (f *Family) checkPrefix(prefix, param string) error {
	if prefix == "" {
		return fmt.Errorf("pattern family %q: %w: template %q starts with parameter %q, so the pattern would start with '*' and match keys of every family; fix parameter %q",
			f.Name, ErrUnsafePattern, f.Template.String(), param, param)
	}
	if !isDelimiter(prefix[len(prefix)-1]) {
		return fmt.Errorf("pattern family %q: %w: the literal prefix %q before the wildcard for %q does not end in a delimiter such as ':', so it would also match unrelated keys such as %q; fix parameter %q",
			f.Name, ErrUnsafePattern, prefix, param, prefix+"s:1", param)
	}
	return nil
}

// isDelimiter reports whether c may end the literal prefix of a pattern: an
// ASCII byte that is not a letter, digit or '_'. '_' counts as a word
// character because names like "user_settings" use it inside words. Bytes
// >= 0x80 may be part of a multi-byte letter, so they do not count.
func isDelimiter(c byte) bool {
	switch {
	case c >= 0x80, c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return false
	}
	return true
}

// EscapeGlob escapes the Redis glob metacharacters * ? [ ] and \ in s with a
// backslash, so that s matches only itself in a MATCH or KEYS pattern. Redis
// matches bytes, and these are all ASCII, so any other byte (including NUL
// and invalid UTF-8) passes through unchanged.
func EscapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 4)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
