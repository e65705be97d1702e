package keyspec

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// event decodes one event; families must be decoded. It is registered even
// when invalid, so that checks naming it do not report it as unknown.
func (d *decoder) event(p *Policy, ee entry) {
	name := ee.key.Value
	path := join("events", name)
	if !eventNameRE.MatchString(name) {
		d.errorf(ee.key, path, "invalid event name %q; use lower-case letters, digits, '.', '_' and '-', e.g. \"product.updated\"", name)
	}
	e := &Event{Name: name}
	p.Events[name] = e
	d.eventAt[name] = ee.key
	if isNull(resolve(ee.val)) {
		d.errorf(ee.key, path, "an event needs attributes and invalidates, e.g. {attributes: [id], invalidates: [{family: product}]}")
		return
	}
	fs, ok := d.fields(resolve(ee.val), path, eventFields)
	if !ok {
		return
	}
	d.optString(fs, path, "owner", &e.Owner, func(string) string { return "" })
	d.optString(fs, path, "description", &e.Description, func(string) string { return "" })

	if a, ok := fs["attributes"]; !ok {
		d.errorf(ee.key, join(path, "attributes"), "is required: list the attributes every publication gives, e.g. [id], or [] for none")
	} else {
		e.Attributes = d.names(a.val, join(path, "attributes"), "attribute")
	}

	inv, ok := fs["invalidates"]
	if !ok {
		d.errorf(ee.key, join(path, "invalidates"), "is required: an event that invalidates nothing is a write whose caches stay stale; list the families it invalidates")
		return
	}
	n := resolve(inv.val)
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		if n.Kind == yaml.SequenceNode || isNull(n) {
			d.errorf(inv.key, join(path, "invalidates"), "invalidates nothing; list at least one family, e.g. [{family: product}]")
		} else {
			d.errorf(n, join(path, "invalidates"), "must be a list of {family, params, wildcard}, not %s", kindName(n))
		}
		return
	}
	used := map[string]bool{}
	for i, item := range n.Content {
		field := fmt.Sprintf("%s[%d]", join(path, "invalidates"), i)
		if v, ok := d.invalidation(p, e, resolve(item), field, used); ok {
			e.Invalidates = append(e.Invalidates, v)
		}
	}
	d.checkAttributeDecls(p, e, fs["attributes"].val)
	for _, a := range e.Attributes {
		if !used[a] {
			d.warnf(fs["attributes"].val, join(path, "attributes"), "attribute %q gives no template parameter; publishers must still send it", a)
		}
	}
}

// invalidation decodes one item of an event's invalidates list and checks
// that every template parameter of its family gets a value or is a
// wildcard. used collects the attributes it reads.
func (d *decoder) invalidation(p *Policy, e *Event, n *yaml.Node, field string, used map[string]bool) (Invalidation, bool) {
	var inv Invalidation
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		// Shorthand: "- product" for {family: product}.
		inv.Family = n.Value
	} else {
		fs, ok := d.fields(n, field, invalidationFields)
		if !ok {
			return inv, false
		}
		fe, ok := fs["family"]
		if !ok {
			d.errorf(n, join(field, "family"), "is required: name the family to invalidate")
			return inv, false
		}
		if inv.Family, ok = d.str(fe.val, join(field, "family"), "a family name"); !ok {
			return inv, false
		}
		if pe, ok := fs["params"]; ok {
			inv.Params = d.stringMap(pe.val, join(field, "params"))
		}
		if we, ok := fs["wildcard"]; ok {
			inv.Wildcard = d.names(we.val, join(field, "wildcard"), "parameter")
		}
	}
	f := p.Families[inv.Family]
	if f == nil {
		d.errorf(n, join(field, "family"), "unknown family %q; declared families: %s", inv.Family, nameList(p.FamilyNames()))
		return inv, false
	}
	if f.Template == nil {
		return inv, false // its template error is reported already
	}
	ok := true
	bad := func(format string, args ...any) {
		d.errorf(n, field, "family %s: "+format, append([]any{inv.Family}, args...)...)
		ok = false
	}
	for _, param := range slices.Sorted(maps.Keys(inv.Params)) {
		attr := inv.Params[param]
		switch {
		case !f.Template.HasParam(param):
			bad("params: %q is not a parameter of template %q (parameters: %s)", param, f.Template, paramList(f.Template))
		case slices.Contains(inv.Wildcard, param):
			bad("parameter %q is both mapped in params and listed in wildcard; keep one", param)
		case !slices.Contains(e.Attributes, attr):
			bad("params: %s takes attribute %q, which the event does not declare; add it to attributes (%s)", param, attr, nameList(e.Attributes))
		}
	}
	for _, param := range inv.Wildcard {
		if !f.Template.HasParam(param) {
			bad("wildcard: %q is not a parameter of template %q (parameters: %s)", param, f.Template, paramList(f.Template))
		}
	}
	if f.Strategy == StrategyVersion && len(inv.Wildcard) > 0 {
		bad("a version family cannot take wildcards: a bump advances one entity's version; give every parameter, or invalidate a delete family by pattern instead")
	}
	dummy := map[string]string{}
	for _, param := range f.Template.params {
		attr := inv.source(param)
		switch {
		case attr == "":
			continue
		case !slices.Contains(e.Attributes, attr):
			if _, mapped := inv.Params[param]; !mapped {
				bad("template parameter %q is not provided: declare attribute %q, map it with params: {%s: <attribute>}, or list it under wildcard to delete every value", param, param, param)
			}
			continue
		}
		used[attr] = true
		dummy[param] = "x"
	}
	if ok && inv.kind(f) == ActionPattern {
		if _, err := f.Pattern(dummy); err != nil && errors.Is(err, ErrUnsafePattern) {
			_, msg, _ := strings.Cut(err.Error(), ": "+ErrUnsafePattern.Error()+": ")
			bad("the wildcards make an unsafe pattern: %s", msg)
		}
	}
	return inv, ok
}

// checkAttributeDecls refuses an attribute that gives several declared
// parameters which no value matches all at once: every publication of the
// event would be refused.
func (d *decoder) checkAttributeDecls(p *Policy, e *Event, at *yaml.Node) {
	for _, a := range e.Attributes {
		var decls []*paramDecl
		var names []string
		for _, inv := range e.Invalidates {
			f := p.Families[inv.Family]
			for _, param := range f.Template.params {
				if decl := f.decls[param]; decl != nil && inv.source(param) == a {
					decls = append(decls, decl)
					names = append(names, fmt.Sprintf("%s.%s %q", f.Name, param, decl.Match))
				}
			}
		}
		if len(decls) < 2 {
			continue
		}
		if _, ok := commonValue(decls); !ok {
			d.errorf(at, join(join("events", e.Name), "attributes"),
				"no value of attribute %q matches all the declarations it is given to (%s), so every publication would be refused; make the declarations agree",
				a, strings.Join(names, ", "))
		}
	}
}

// names decodes a list of parameter or attribute names.
func (d *decoder) names(n *yaml.Node, field, what string) []string {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, field, "must be a list of %s names such as [id], not %s", what, kindName(n))
		return nil
	}
	var out []string
	for _, item := range n.Content {
		s, ok := d.str(item, field, "a "+what+" name")
		switch {
		case !ok:
		case !validParamName(s):
			d.errorf(resolve(item), field, "invalid %s name %q; use letters, digits and '_', not starting with a digit", what, s)
		case slices.Contains(out, s):
			d.errorf(resolve(item), field, "duplicate %s %q", what, s)
		default:
			out = append(out, s)
		}
	}
	return out
}

// stringMap decodes a mapping of names to names (template parameter to
// event attribute).
func (d *decoder) stringMap(n *yaml.Node, field string) map[string]string {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	ents, ok := d.entries(n, field)
	if !ok {
		return nil
	}
	m := make(map[string]string, len(ents))
	for _, e := range ents {
		if v, ok := d.str(e.val, join(field, e.key.Value), "an attribute name"); ok {
			m[e.key.Value] = v
		}
	}
	return m
}
