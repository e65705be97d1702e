package keyspec

import (
	"fmt"
	"slices"
)

// Template is a parsed key template such as "user:{id}:profile": literal text
// with {name} parameters. A Template is immutable and safe for concurrent use.
//
// The grammar is strict because a template decides which keys an invalidation
// deletes: parameters must be separated by literal text (in "{a}{b}" the key
// "123" could be a=1,b=23 or a=12,b=3), and a template must hold some literal
// text, so that its keys and patterns can never be just a parameter value.
type Template struct {
	src    string
	segs   []segment
	params []string
}

// segment is one piece of a template: literal text, or a parameter.
type segment struct {
	text    string // literal text, or the parameter name when param is true
	isParam bool
}

// ParseTemplate parses a key template. Parameter names match
// [A-Za-z_][A-Za-z0-9_]*. It refuses an empty template, stray or unbalanced
// braces, empty, invalid or duplicate parameter names, two parameters with no
// literal text between them, and a template without literal text. Errors wrap
// ErrInvalidTemplate and give the byte offset of the problem.
func ParseTemplate(s string) (*Template, error) {
	t := &Template{src: s}
	if s == "" {
		return nil, templateError(s, 0, "template is empty; write literal text with {param} placeholders, e.g. \"user:{id}:profile\"")
	}
	lit := 0 // start of the current literal run
	hasLiteral := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '}':
			return nil, templateError(s, i, "stray '}' with no '{' before it; braces only delimit parameters")
		case '{':
			if i > lit {
				t.segs = append(t.segs, segment{text: s[lit:i]})
				hasLiteral = true
			} else if len(t.segs) > 0 && t.segs[len(t.segs)-1].isParam {
				return nil, templateError(s, i, fmt.Sprintf("parameter follows parameter %q with no literal text between them, so keys would be ambiguous; put a delimiter such as ':' between them", t.segs[len(t.segs)-1].text))
			}
			end := i + 1
			for end < len(s) && s[end] != '}' {
				if s[end] == '{' {
					return nil, templateError(s, end, "'{' inside a parameter; braces cannot nest")
				}
				end++
			}
			if end == len(s) {
				return nil, templateError(s, i, "unclosed '{'; close the parameter with '}'")
			}
			name := s[i+1 : end]
			if name == "" {
				return nil, templateError(s, i, "empty parameter name \"{}\"; name it, e.g. {id}")
			}
			if !validParamName(name) {
				return nil, templateError(s, i+1, fmt.Sprintf("invalid parameter name %q; use letters, digits and '_', not starting with a digit", name))
			}
			if slices.Contains(t.params, name) {
				return nil, templateError(s, i+1, fmt.Sprintf("duplicate parameter %q; each parameter may appear once", name))
			}
			t.segs = append(t.segs, segment{text: name, isParam: true})
			t.params = append(t.params, name)
			i = end
			lit = end + 1
		}
	}
	if lit < len(s) {
		t.segs = append(t.segs, segment{text: s[lit:]})
		hasLiteral = true
	}
	if !hasLiteral {
		return nil, templateError(s, 0, "template has no literal text, so its keys would be bare parameter values; add a prefix such as \"user:\"")
	}
	return t, nil
}

// templateError builds a parse error that wraps ErrInvalidTemplate.
func templateError(src string, offset int, msg string) error {
	return fmt.Errorf("%w %q at offset %d: %s", ErrInvalidTemplate, src, offset, msg)
}

// validParamName reports whether name matches [A-Za-z_][A-Za-z0-9_]*.
func validParamName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// String returns the template's source text.
func (t *Template) String() string { return t.src }

// Params returns the parameter names in order of appearance. The slice is a
// copy; changing it does not change the template.
func (t *Template) Params() []string { return slices.Clone(t.params) }

// HasParam reports whether the template has a parameter with this name.
func (t *Template) HasParam(name string) bool { return slices.Contains(t.params, name) }
