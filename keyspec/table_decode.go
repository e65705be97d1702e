package keyspec

import (
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// tableFields are the fields of one entry of the tables section.
var tableFields = []string{"event", "attributes"}

// table decodes one entry of the tables section; events must be decoded.
func (d *decoder) table(p *Policy, te entry) {
	key := te.key.Value
	path := join("tables", key)
	schema, name, ok := strings.Cut(key, ".")
	switch {
	case !ok || schema == "" || name == "" || strings.Contains(name, "."):
		d.errorf(te.key, path, "name the table as schema.table, e.g. public.products: a bare name would depend on each session's search_path")
		return
	case !utf8.ValidString(key) || strings.ContainsAny(key, "\x00\"") || strings.TrimSpace(key) != key:
		d.errorf(te.key, path, "invalid table name %q: write it as PostgreSQL stores it, without quotes or surrounding spaces", key)
		return
	}
	t := &Table{Schema: schema, Name: name}
	if isNull(resolve(te.val)) {
		d.errorf(te.key, path, "a table needs an event and its attributes, e.g. {event: product.updated, attributes: {id: id}}")
		return
	}
	fs, ok := d.fields(resolve(te.val), path, tableFields)
	if !ok {
		return
	}
	var e *Event
	if ee, ok := fs["event"]; !ok {
		d.errorf(te.key, join(path, "event"), "is required: the event each row change publishes; declared events: %s", nameList(p.EventNames()))
	} else if s, ok := d.str(ee.val, join(path, "event"), "an event name"); ok {
		if e = p.Events[s]; e == nil {
			d.errorf(resolve(ee.val), join(path, "event"), "unknown event %q; declared events: %s", s, nameList(p.EventNames()))
		} else {
			d.truncateWarnings(p, e, resolve(ee.val), join(path, "event"))
		}
		t.Event = s
	}
	ae, ok := fs["attributes"]
	if !ok {
		d.errorf(te.key, join(path, "attributes"), "is required: map each attribute of the event to the column that gives it, e.g. {id: id}")
		return
	}
	n := resolve(ae.val)
	if n.Kind != yaml.MappingNode && !isNull(n) {
		d.errorf(n, join(path, "attributes"), "must map event attributes to columns, e.g. {sku: product_id}, not %s", kindName(n))
		return
	}
	t.Attributes = map[string]string{}
	if !isNull(n) {
		ents, _ := d.entries(n, join(path, "attributes"))
		for _, ce := range ents {
			field := join(join(path, "attributes"), ce.key.Value)
			col, ok := d.str(ce.val, field, "a column name")
			if !ok {
				continue
			}
			if e != nil && !slices.Contains(e.Attributes, ce.key.Value) {
				d.errorf(ce.key, field, "event %q has no attribute %q (attributes: %s)", e.Name, ce.key.Value, nameList(e.Attributes))
				continue
			}
			if !utf8.ValidString(col) || strings.ContainsRune(col, 0) {
				d.errorf(resolve(ce.val), field, "invalid column name %q", col)
				continue
			}
			t.Attributes[ce.key.Value] = col
		}
	}
	if e != nil {
		var missing []string
		for _, a := range e.Attributes {
			if _, ok := t.Attributes[a]; !ok {
				missing = append(missing, a)
			}
		}
		if len(missing) > 0 {
			d.errorf(ae.key, join(path, "attributes"), "event %q needs attribute %s, which no column gives; map each to a column, e.g. {%s: %s}",
				e.Name, nameList(missing), missing[0], missing[0])
		}
	}
	p.Tables[t.Qualified()] = t
}

// tableColumnsNote is how policy lint and cdc setup explain what a table
// needs for its deletes and moving updates.
func tableColumnsNote(t *Table) string {
	return "deletes, and updates that change columns " + strings.Join(t.Columns(), ", ") +
		", publish the old row's values, which PostgreSQL sends only for columns in the table's REPLICA IDENTITY: " +
		"use ALTER TABLE " + t.Qualified() + " REPLICA IDENTITY FULL, or USING INDEX of a unique index on them (invalidator cdc setup checks)"
}

// TableNotes returns, per table of the tables section, what the database
// must provide for it (sorted by table): notes, not problems, since only the
// database can tell whether it does.
func (p *Policy) TableNotes() []string {
	names := slices.Sorted(maps.Keys(p.Tables))
	notes := make([]string, 0, len(names))
	for _, n := range names {
		notes = append(notes, "tables."+n+": "+tableColumnsNote(p.Tables[n]))
	}
	return notes
}

// truncateWarnings warns about the families of a table's event that a
// TRUNCATE of the table cannot invalidate: invalidator cdc deletes every
// key of each family, and a family whose whole-family pattern is unsafe
// (its template starts with a parameter) cannot be deleted so.
func (d *decoder) truncateWarnings(p *Policy, e *Event, n *yaml.Node, field string) {
	seen := map[string]bool{}
	for _, inv := range e.Invalidates {
		f := p.Families[inv.Family]
		if f == nil || f.Template == nil || seen[f.Name] {
			continue
		}
		seen[f.Name] = true
		if _, err := f.pattern(nil); err != nil {
			d.warnf(n, field, "a TRUNCATE of the table cannot invalidate family %q, whose keys would stay until their TTL (invalidator cdc logs and counts it): %v", f.Name, err)
		}
	}
}
