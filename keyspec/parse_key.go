package keyspec

import (
	"fmt"
	"strings"
)

// ParseKey returns the parameter values that Key renders key from: the
// inverse of Key for a delete family. It fails with ErrKeyShape when key is
// not a key of the family, or is ambiguous: with undeclared values a ':' in
// a value can shift a split ("x:{a}:{b}" renders "x:1:2:3" from a="1:2" and
// from a="1", b="2:3"), and a caller must not guess which entity it holds.
// Version families have no such keys (ErrVersioned).
func (f *Family) ParseKey(key string) (map[string]string, error) {
	if f.Strategy == StrategyVersion {
		return nil, fmt.Errorf("parse key family %q: %w: its data lives at version data keys", f.Name, ErrVersioned)
	}
	return f.parseKey(key)
}

// parseKey is ParseKey for any strategy: the inverse of the template's
// rendering.
func (f *Family) parseKey(key string) (map[string]string, error) {
	segs := f.Template.segs
	// count[i][p] is the number of ways (capped at 2) segs[i:] renders
	// key[p:]; -1 means not computed. Memoised, so a long key costs
	// O(segments * len(key)^2) at worst, never exponential time.
	count := make([][]int8, len(segs)+1)
	for i := range count {
		count[i] = make([]int8, len(key)+1)
		for p := range count[i] {
			count[i][p] = -1
		}
	}
	var ways func(i, p int) int8
	ways = func(i, p int) int8 {
		if c := count[i][p]; c >= 0 {
			return c
		}
		var n int8
		switch {
		case i == len(segs):
			if p == len(key) {
				n = 1
			}
		case !segs[i].isParam:
			if strings.HasPrefix(key[p:], segs[i].text) {
				n = ways(i+1, p+len(segs[i].text))
			}
		default:
			for end := p + 1; end <= len(key) && n < 2; end++ {
				if _, ok := f.paramValue(segs[i].text, key[p:end]); ok {
					n += ways(i+1, end)
				}
			}
		}
		n = min(n, 2)
		count[i][p] = n
		return n
	}
	switch ways(0, 0) {
	case 0:
		return nil, fmt.Errorf("parse key family %q: %w: %s does not fit template %q", f.Name, ErrKeyShape, quoteValue(key), f.Template.String())
	case 2:
		return nil, fmt.Errorf("parse key family %q: %w: %s fits template %q in more than one way; declare the parameters (params) so that values cannot hold the delimiters",
			f.Name, ErrKeyShape, quoteValue(key), f.Template.String())
	}
	params := make(map[string]string, len(f.Template.params))
	for i, p := 0, 0; i < len(segs); i++ {
		if !segs[i].isParam {
			p += len(segs[i].text)
			continue
		}
		for end := p + 1; end <= len(key); end++ {
			if v, ok := f.paramValue(segs[i].text, key[p:end]); ok && ways(i+1, end) == 1 {
				params[segs[i].text] = v
				p = end
				break
			}
		}
	}
	// The one parse must also be a key Key accepts (hash-tag rules).
	if err := f.checkParams("parse key", params, true); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyShape, err)
	}
	return params, nil
}

// paramValue returns the value of parameter name that renders as s, and
// whether there is one: s itself, or s without its braces for the hash-tag
// parameter, non-empty and within the parameter's declaration.
func (f *Family) paramValue(name, s string) (string, bool) {
	if name == f.HashTag {
		if len(s) < 3 || s[0] != '{' || s[len(s)-1] != '}' {
			return "", false
		}
		s = s[1 : len(s)-1]
	}
	if s == "" {
		return "", false
	}
	if d := f.decls[name]; d != nil && !d.match(s) {
		return "", false
	}
	return s, true
}
