package keyspec

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error returned by this package that matches one of
// them wraps it with %w and names the family, parameter or policy involved,
// so test with errors.Is, never with ==.
var (
	// ErrUnknownFamily means a family name is not declared in the policy.
	// Declare it under "families:" in the policy file, or fix the name.
	ErrUnknownFamily = errors.New("unknown family")

	// ErrUnknownEvent means an event name is not declared in the policy.
	// Declare it under "events:" in the policy file, or fix the name;
	// workers must load the new policy before producers publish it.
	ErrUnknownEvent = errors.New("unknown event")

	// ErrUnknownClass means a freshness class name is not declared in the
	// policy. Declare it under "classes:" or fix the name.
	ErrUnknownClass = errors.New("unknown class")

	// ErrMissingParam means a template parameter was not given. Every
	// parameter is needed to render a key; a pattern leaves it as a wildcard.
	ErrMissingParam = errors.New("missing parameter")

	// ErrInvalidTemplate means a key template does not parse. The message
	// says what is wrong and at which byte offset.
	ErrInvalidTemplate = errors.New("invalid key template")

	// ErrUnknownParam means a parameter was given that the family's template
	// does not have, which usually means the caller targets the wrong family.
	ErrUnknownParam = errors.New("unknown parameter")

	// ErrEmptyParam means a parameter value was the empty string. An empty
	// value would render a different key shape (user::profile) than the one
	// the cache writes, so it is refused rather than silently missing.
	ErrEmptyParam = errors.New("empty parameter value")

	// ErrInvalidParam means a parameter value does not match the
	// declaration of its parameter in the policy (families.<name>.params).
	// Such a key would lie outside the family, and a pattern delete of the
	// family would not remove it; fix the value, or widen the declaration.
	ErrInvalidParam = errors.New("parameter value outside its declaration")

	// ErrKeyShape means a key is not one the family renders, or renders
	// from more than one set of parameter values. Readers of sampled keys
	// (audits) skip such keys: they cannot tell which entity a key caches.
	ErrKeyShape = errors.New("key does not parse as the family's")

	// ErrUnsafePattern means a SCAN MATCH pattern would match every key, or
	// keys of unrelated prefixes. Fix more parameters so the pattern starts
	// with a literal prefix that ends in a delimiter such as ':'.
	ErrUnsafePattern = errors.New("unsafe pattern")

	// ErrNotVersioned means a version or data key was asked of a family
	// whose strategy is not "version".
	ErrNotVersioned = errors.New("family is not versioned")

	// ErrVersioned means a pattern was asked of a family whose strategy is
	// "version". Its cache entries live at version and data keys that the
	// family's pattern does not match, so a pattern delete would silently
	// invalidate nothing; advance the version instead.
	ErrVersioned = errors.New("family is versioned")

	// ErrUnsafeHashTag means parameter values contain braces that would move
	// the Redis Cluster hash tag, so keys that must share a slot would not.
	ErrUnsafeHashTag = errors.New("parameter value would move the cluster hash tag")
)

// ValidationError is one problem in a policy file, with its position.
type ValidationError struct {
	File   string // the policy source, usually a file name; may be ""
	Line   int    // 1-based line; 0 when unknown
	Column int    // 1-based column; 0 when unknown
	Field  string // dotted path of the field, e.g. "families.user.template"; may be ""
	Msg    string // what is wrong and how to fix it
}

// Error formats the problem as "policy.yaml:12:5: families.user.template: msg".
func (e ValidationError) Error() string {
	var b strings.Builder
	pos := e.File
	if e.Line > 0 {
		pos += fmt.Sprintf(":%d", e.Line)
		if e.Column > 0 {
			pos += fmt.Sprintf(":%d", e.Column)
		}
	}
	pos = strings.TrimPrefix(pos, ":")
	if pos != "" {
		b.WriteString(pos)
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ValidationErrors lists every problem found in a policy file, in file order.
// Parse reports them all at once so a user fixes a file in one pass.
type ValidationErrors []ValidationError

// Error joins all problems, one per line.
func (es ValidationErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}
