package keyspec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// policyVersion is the only policy file format version this package reads.
const policyVersion = 1

// standardClassName is the class a policy file defaults to when it sets no
// default_class and declares several classes.
const standardClassName = "standard"

// Field names of the policy file, in the order the file format documents
// them; they are listed in "unknown field" errors.
var (
	topFields          = []string{"version", "default_class", "classes", "families", "events", "tables"}
	classFields        = []string{"ttl", "jitter", "queue", "weight", "max_retry", "timeout", "backoff_base", "backoff_max", "second_delete", "audit_every", "audit_sample", "shards"}
	familyFields       = []string{"template", "params", "class", "strategy", "hash_tag", "ttl", "jitter", "mode", "max_keys", "owner", "audit", "audit_every", "audit_sample"}
	auditFields        = []string{"query", "compare", "fields", "recheck_after"}
	paramFields        = []string{"match"}
	eventFields        = []string{"owner", "description", "attributes", "invalidates"}
	invalidationFields = []string{"family", "params", "wildcard"}

	// syntaxErrorRE extracts the line from a YAML syntax error.
	syntaxErrorRE = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)
	// queueNameRE keeps queue names printable and free of spaces, so they
	// read well in the dashboard, the CLI and Redis keys.
	queueNameRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)
)

// decoder walks a policy file's YAML node tree and collects every problem
// instead of stopping at the first, so a user fixes a file in one pass.
type decoder struct {
	file  string
	errs  ValidationErrors
	warns ValidationErrors
	// familyAt and eventAt hold each declaration's name node, for checks
	// that run after the whole file is decoded.
	familyAt map[string]*yaml.Node
	eventAt  map[string]*yaml.Node
	// decls memoises compileParam by expression: policies repeat
	// declarations ('[0-9]+'), and compiling one is most of a family's
	// load.
	decls map[string]compiled
	// searchLimit bounds each search of the collision check; 0 means
	// maxSearchStates. Tests lower it.
	searchLimit int
}

// entry is one key/value pair of a YAML mapping.
type entry struct{ key, val *yaml.Node }

// errorf records a problem at node n (nil for no position).
func (d *decoder) errorf(n *yaml.Node, field, format string, args ...any) {
	e := ValidationError{File: d.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

// warnf records a warning at node n.
func (d *decoder) warnf(n *yaml.Node, field, format string, args ...any) {
	e := ValidationError{File: d.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.warns = append(d.warns, e)
}

// decode parses data into a policy. The policy is meaningful only when no
// errors were recorded.
func (d *decoder) decode(data []byte) *Policy {
	root := d.parseYAML(data)
	if root == nil {
		return nil
	}
	top, ok := d.fields(root, "", topFields)
	if !ok {
		return nil
	}
	p := &Policy{Classes: map[string]*Class{}, Families: map[string]*Family{}, Events: map[string]*Event{}, Tables: map[string]*Table{}}
	d.familyAt, d.eventAt = map[string]*yaml.Node{}, map[string]*yaml.Node{}

	if e, ok := top["version"]; !ok {
		d.errorf(root, "version", "is required; add \"version: %d\" at the top", policyVersion)
	} else if v, ok := d.int(e.val, "version"); ok && v != policyVersion {
		d.errorf(e.val, "version", "unsupported version %d; this invalidator reads version %d", v, policyVersion)
	}

	if e, ok := top["classes"]; ok {
		d.classes(p, e)
	} else {
		d.errorf(root, "classes", "at least one class is required, e.g. \"classes: {standard: {ttl: 10m}}\"")
	}
	d.defaultClass(p, root, top)
	if e, ok := top["classes"]; ok {
		for _, msg := range checkShards(p) {
			d.errorf(e.key, "classes", "%s", msg)
		}
	}
	cacheShards(p)

	if e, ok := top["families"]; ok {
		if n := resolve(e.val); !isNull(n) {
			ents, _ := d.entries(n, "families")
			for _, fe := range ents {
				d.family(p, fe)
			}
		}
	}
	if e, ok := top["events"]; ok {
		if n := resolve(e.val); !isNull(n) {
			ents, _ := d.entries(n, "events")
			for _, ee := range ents {
				d.event(p, ee)
			}
		}
	}
	if e, ok := top["tables"]; ok {
		if n := resolve(e.val); !isNull(n) {
			ents, _ := d.entries(n, "tables")
			for _, te := range ents {
				d.table(p, te)
			}
		}
	}
	d.checkCollisions(p)
	p.warns = d.warns
	p.familyAt = make(map[string]position, len(d.familyAt))
	for name, n := range d.familyAt {
		p.familyAt[name] = position{n.Line, n.Column}
	}
	return p
}

// parseYAML decodes the single YAML document of data and returns its root
// node, or nil after recording why there is none.
func (d *decoder) parseYAML(data []byte) (root *yaml.Node) {
	// The policy is outside input: a parser bug must become an error, not a
	// crashed worker.
	defer func() {
		if r := recover(); r != nil {
			d.errorf(nil, "", "invalid YAML: parser failed: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorf(nil, "", "policy is empty; it needs at least \"version: %d\" and one class under \"classes:\"", policyVersion)
		} else {
			d.syntaxError(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(err)
		return nil
	default:
		d.errorf(&extra, "", "a policy file holds one YAML document; remove the second \"---\" and what follows, or merge it into the first")
		return nil
	}
	if len(doc.Content) == 0 || isNull(resolve(doc.Content[0])) {
		d.errorf(nil, "", "policy is empty; it needs at least \"version: %d\" and one class under \"classes:\"", policyVersion)
		return nil
	}
	return resolve(doc.Content[0])
}

// syntaxError records a YAML syntax error, with its line when the parser
// gives one.
func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	if m := syntaxErrorRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		d.errs = append(d.errs, ValidationError{File: d.file, Line: line, Msg: "invalid YAML: " + m[2]})
		return
	}
	d.errs = append(d.errs, ValidationError{File: d.file, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")})
}

// classes decodes the "classes" mapping.
func (d *decoder) classes(p *Policy, e entry) {
	n := resolve(e.val)
	if isNull(n) {
		d.errorf(e.key, "classes", "at least one class is required, e.g. \"standard: {ttl: 10m}\"")
		return
	}
	ents, ok := d.entries(n, "classes")
	if !ok {
		return
	}
	if len(ents) == 0 {
		d.errorf(n, "classes", "at least one class is required, e.g. \"standard: {ttl: 10m}\"")
	}
	for _, ce := range ents {
		d.class(p, ce)
	}
}

// class decodes one class. It is registered even when invalid, so that
// families naming it do not report a second, misleading "unknown class".
func (d *decoder) class(p *Policy, ce entry) {
	name := ce.key.Value
	path := join("classes", name)
	if msg := checkClassName(name); msg != "" {
		d.errorf(ce.key, path, "%s", msg)
	}
	c := NewClass(name)
	p.Classes[name] = c
	fs, ok := d.optionalFields(ce.val, path, classFields)
	if !ok {
		return
	}
	d.optDuration(fs, path, "ttl", &c.TTL, checkTTL)
	d.optFloat(fs, path, "jitter", &c.Jitter, checkJitter)
	d.optString(fs, path, "queue", &c.Queue, func(q string) string {
		if !queueNameRE.MatchString(q) {
			return fmt.Sprintf("invalid queue name %q; use letters, digits, '_', '.', ':' and '-'", q)
		}
		return ""
	})
	d.optInt(fs, path, "max_retry", &c.MaxRetry, func(n int) string {
		if n < 0 {
			return fmt.Sprintf("max_retry %d is negative; use 0 to send a failed task straight to the dead letter", n)
		}
		return ""
	})
	d.optDuration(fs, path, "timeout", &c.Timeout, wholeSeconds("timeout"))
	d.optInt(fs, path, "weight", &c.Weight, func(n int) string {
		if n < 1 || n > 1000 {
			return fmt.Sprintf("weight %d is out of range; use 1 to 1000 (a queue's share of polls is its weight over the sum)", n)
		}
		return ""
	})
	d.optInt(fs, path, "shards", &c.Shards, func(n int) string {
		if n < 1 || n > MaxShards {
			return fmt.Sprintf("shards %d is out of range; use 1 to %d (one per cluster master is the useful most)", n, MaxShards)
		}
		return ""
	})
	d.optDuration(fs, path, "second_delete", &c.SecondDelete, func(v time.Duration) string {
		if v < 0 || v > time.Hour {
			return fmt.Sprintf("second_delete %s is out of range; use a delay such as 500ms, up to 1h, or leave it out", v)
		}
		return ""
	})
	d.optDuration(fs, path, "audit_every", &c.AuditEvery, checkAuditEvery)
	d.optInt(fs, path, "audit_sample", &c.AuditSample, checkAuditSample)
	_, baseGiven := fs["backoff_base"]
	_, maxGiven := fs["backoff_max"]
	baseOK := d.optDuration(fs, path, "backoff_base", &c.BackoffBase, positive("backoff_base")) || !baseGiven
	maxOK := d.optDuration(fs, path, "backoff_max", &c.BackoffMax, func(v time.Duration) string {
		if v < 0 {
			return fmt.Sprintf("backoff_max %s is negative", v)
		}
		return ""
	}) || !maxGiven
	// Compare only valid values (given or default), so one typo gives one error.
	if baseOK && maxOK && c.BackoffMax < c.BackoffBase {
		at, field := ce.key, path
		if e, ok := fs["backoff_max"]; ok {
			at, field = e.val, join(path, "backoff_max")
		} else if e, ok := fs["backoff_base"]; ok {
			at, field = e.val, join(path, "backoff_base")
		}
		d.errorf(at, field, "backoff_max %s is less than backoff_base %s; the cap must be at least the first delay", c.BackoffMax, c.BackoffBase)
	}
}

// positive returns a check that refuses durations <= 0.
func positive(name string) func(time.Duration) string {
	return func(v time.Duration) string {
		if v <= 0 {
			return fmt.Sprintf("%s %s must be positive", name, v)
		}
		return ""
	}
}

// wholeSeconds checks a task timeout: asynq keeps timeouts in whole seconds
// (it truncates), so 500ms would run with no timeout at all (asynq's
// 30-minute default) and 1500ms as 1s.
func wholeSeconds(name string) func(time.Duration) string {
	return func(v time.Duration) string {
		if v < time.Second || v%time.Second != 0 {
			return fmt.Sprintf("%s %s must be whole seconds, at least 1s: asynq counts task timeouts in whole seconds", name, v)
		}
		return ""
	}
}

// defaultClass decodes or infers default_class; classes must be decoded.
func (d *decoder) defaultClass(p *Policy, root *yaml.Node, top map[string]entry) {
	if e, ok := top["default_class"]; ok {
		name, ok := d.str(e.val, "default_class", "a class name")
		if !ok {
			return
		}
		if _, ok := p.Classes[name]; !ok {
			d.errorf(e.val, "default_class", "unknown class %q; declared classes: %s", name, nameList(p.ClassNames()))
			return
		}
		p.DefaultClass = name
		return
	}
	switch {
	case len(p.Classes) == 0:
		// Already reported: no classes.
	case p.Classes[standardClassName] != nil:
		p.DefaultClass = standardClassName
	case len(p.Classes) == 1:
		p.DefaultClass = p.ClassNames()[0]
	default:
		d.errorf(root, "default_class", "is required when there are several classes and none is named %q; set it to one of: %s",
			standardClassName, nameList(p.ClassNames()))
	}
}

// family decodes one family; classes must be decoded.
func (d *decoder) family(p *Policy, fe entry) {
	name := fe.key.Value
	path := join("families", name)
	if msg := checkFamilyName(name); msg != "" {
		d.errorf(fe.key, path, "%s", msg)
	}
	if isNull(resolve(fe.val)) {
		d.errorf(fe.key, path, "a family needs at least template and class")
		return
	}
	fs, ok := d.fields(resolve(fe.val), path, familyFields)
	if !ok {
		return
	}
	f := &Family{Name: name, FamilyOptions: FamilyOptions{Strategy: StrategyDelete}}

	if e, ok := fs["template"]; !ok {
		d.errorf(fe.key, join(path, "template"), "is required, e.g. template: \"user:{id}:profile\"")
	} else if s, ok := d.str(e.val, join(path, "template"), "a key template"); ok {
		t, err := ParseTemplate(s)
		if err != nil {
			d.errorf(e.val, join(path, "template"), "%v", err)
		} else {
			f.Template = t
		}
	}

	if e, ok := fs["params"]; ok {
		d.params(f, e, join(path, "params"))
	}

	var class *Class
	if e, ok := fs["class"]; !ok {
		d.errorf(fe.key, join(path, "class"), "is required; declared classes: %s", nameList(p.ClassNames()))
	} else if s, ok := d.str(e.val, join(path, "class"), "a class name"); ok {
		if class = p.Classes[s]; class == nil {
			d.errorf(e.val, join(path, "class"), "unknown class %q; declared classes: %s", s, nameList(p.ClassNames()))
		}
		f.Class = s
	}

	var strategy string
	if d.optString(fs, path, "strategy", &strategy, func(s string) string { return checkStrategy(Strategy(s)) }) {
		f.Strategy = Strategy(strategy)
	}
	d.optString(fs, path, "hash_tag", &f.HashTag, func(s string) string {
		if s == "" {
			return "is empty; name a template parameter, or remove hash_tag"
		}
		if f.Template == nil {
			return "" // the template error is reported already
		}
		return checkHashTagParam(f.Template, s)
	})
	ttlKnown := d.optDuration(fs, path, "ttl", &f.TTL, checkTTL)
	d.optFloat(fs, path, "jitter", &f.Jitter, checkJitter)
	d.optString(fs, path, "owner", &f.Owner, func(string) string { return "" })
	f.Mode = ModeEnforce
	var mode string
	if d.optString(fs, path, "mode", &mode, func(s string) string { return checkMode(Mode(s)) }) {
		f.Mode = Mode(mode)
	}
	// A version family's max_keys caps the version keys one delete of
	// them may remove: invalidator cdc deletes them all for a TRUNCATE.
	d.optInt(fs, path, "max_keys", &f.MaxKeys, checkMaxKeys)

	if class != nil {
		if _, given := fs["ttl"]; !given {
			f.TTL = class.TTL
			ttlKnown = true
		}
		if _, given := fs["jitter"]; !given {
			f.Jitter = class.Jitter
		}
	}
	// Bumping a version orphans the old data keys; nothing deletes them, so
	// without a TTL they would stay in memory forever.
	if f.Strategy == StrategyVersion && ttlKnown && f.TTL == 0 {
		at, field := fe.key, join(path, "ttl")
		if e, ok := fs["ttl"]; ok {
			at = e.val
		}
		d.errorf(at, field, "a version family needs a TTL > 0: a version bump orphans the old data keys and only their TTL removes them; set ttl here or on class %q", f.Class)
	}
	if e, ok := fs["audit"]; ok {
		f.Audit = d.audit(f, class, e, join(path, "audit"))
	}
	d.auditSchedule(f, class, fs, fe, path)
	p.Families[name] = f
	d.familyAt[name] = fe.key
}

// audit decodes a family's audit section; the family's template and class
// must be decoded. It returns nil when the section is invalid.
func (d *decoder) audit(f *Family, class *Class, e entry, path string) *Audit {
	n := resolve(e.val)
	if isNull(n) {
		d.errorf(e.key, path, "is empty; give at least a query, e.g. audit: {query: \"SELECT row_to_json(p) FROM products p WHERE id = @id\"}")
		return nil
	}
	fs, ok := d.fields(n, path, auditFields)
	if !ok {
		return nil
	}
	a := &Audit{Compare: AuditCompareJSON, RecheckAfter: DefaultRecheckAfter}
	if class != nil && class.SecondDelete > 0 {
		a.RecheckAfter = class.SecondDelete + time.Second
	}
	valid := true
	if qe, ok := fs["query"]; !ok {
		d.errorf(e.key, join(path, "query"), "is required: a SQL query returning one column of the entity, with the template parameters as @name, e.g. \"SELECT row_to_json(p) FROM products p WHERE id = @id\"")
		valid = false
	} else if q, ok := d.str(qe.val, join(path, "query"), "a SQL query"); !ok {
		valid = false
	} else {
		a.Query = q
		valid = d.auditQuery(f, a, resolve(qe.val), join(path, "query")) && valid
	}
	if _, given := fs["compare"]; given && !d.optString(fs, path, "compare", &a.Compare, func(s string) string {
		if s != AuditCompareJSON && s != AuditCompareBytes {
			return fmt.Sprintf("unknown compare mode %q; use %q (the default) or %q", s, AuditCompareJSON, AuditCompareBytes)
		}
		return ""
	}) {
		valid = false
	}
	if fe, ok := fs["fields"]; ok {
		valid = d.auditFields(a, fe, join(path, "fields")) && valid
	}
	if _, given := fs["recheck_after"]; given && !d.optDuration(fs, path, "recheck_after", &a.RecheckAfter, func(v time.Duration) string {
		if v < 0 {
			return fmt.Sprintf("recheck_after %s is negative; use a delay longer than the class's invalidation lag, e.g. 2s", v)
		}
		return ""
	}) {
		valid = false
	}
	if !valid {
		return nil
	}
	return a
}

// auditSchedule resolves a family's audit_every and audit_sample into its
// audit section: the family's own, else its class's. They need an audit
// section, which says how to read the source.
func (d *decoder) auditSchedule(f *Family, class *Class, fs map[string]entry, fe entry, path string) {
	var every time.Duration
	var sample int
	everyGiven := d.optDuration(fs, path, "audit_every", &every, checkAuditEvery)
	sampleGiven := d.optInt(fs, path, "audit_sample", &sample, checkAuditSample)
	if _, ok := fs["audit"]; !ok {
		for _, name := range []string{"audit_every", "audit_sample"} {
			if e, ok := fs[name]; ok {
				d.errorf(e.key, join(path, name), "needs an audit section that says how to read the source, e.g. audit: {query: \"SELECT row_to_json(p) FROM products p WHERE id = @id\"}")
			}
		}
		return
	}
	if f.Audit == nil {
		return // the audit section's error is reported already
	}
	if !everyGiven && class != nil {
		every = class.AuditEvery
	}
	if !sampleGiven && class != nil {
		sample = class.AuditSample
	}
	f.Audit.Every, f.Audit.Sample = every, sample
}

// auditQuery checks a query's placeholders against the template.
func (d *decoder) auditQuery(f *Family, a *Audit, n *yaml.Node, field string) bool {
	if !utf8.ValidString(a.Query) {
		d.errorf(n, field, "is not valid UTF-8")
		return false
	}
	a.Params = AuditQueryParams(a.Query)
	if f.Template == nil {
		return true // the template error is reported already
	}
	ok := true
	for _, p := range a.Params {
		if !f.Template.HasParam(p) {
			d.errorf(n, field, "@%s is not a parameter of template %q (parameters: %s); a query can use only the key's parameters", p, f.Template, paramList(f.Template))
			ok = false
		}
	}
	for _, p := range f.Template.Params() {
		if !slices.Contains(a.Params, p) {
			d.warnf(n, field, "does not use template parameter %q (as @%s): keys that differ only in it are compared with the same row", p, p)
		}
	}
	return ok
}

// auditFields decodes the fields of a JSON comparison.
func (d *decoder) auditFields(a *Audit, e entry, field string) bool {
	n := resolve(e.val)
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, field, "must be a list of top-level JSON fields, e.g. [price, updated_at], not %s", kindName(n))
		return false
	}
	if a.Compare != AuditCompareJSON {
		d.errorf(e.key, field, "fields apply only to compare: json; remove them or use compare: json")
		return false
	}
	ok := true
	for _, item := range n.Content {
		s, good := d.str(item, field, "a JSON field name")
		switch {
		case !good:
			ok = false
		case slices.Contains(a.Fields, s):
			d.errorf(resolve(item), field, "duplicate field %q", s)
			ok = false
		default:
			a.Fields = append(a.Fields, s)
		}
	}
	if ok && len(a.Fields) == 0 {
		d.errorf(n, field, "is empty; list fields to compare, or remove it to compare whole values")
		ok = false
	}
	return ok
}

// params decodes a family's parameter declarations; its template must be
// decoded.
func (d *decoder) params(f *Family, e entry, path string) {
	n := resolve(e.val)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping of template parameters to declarations, e.g. params: {id: {match: '[0-9]+'}}, not %s", kindName(n))
		return
	}
	ents, _ := d.entries(n, path)
	for _, pe := range ents {
		name, field := pe.key.Value, join(path, pe.key.Value)
		if f.Template != nil && !f.Template.HasParam(name) {
			d.errorf(pe.key, field, "%q is not a parameter of template %q (parameters: %s)", name, f.Template, paramList(f.Template))
			continue
		}
		v := resolve(pe.val)
		if v.Kind == yaml.ScalarNode && !isNull(v) {
			// An event's params maps parameters to attribute names; a
			// family's declares the values.
			d.errorf(v, field, "must be a declaration such as {match: '[0-9]+'}, not %s (in a family, params declares the values a parameter takes; in an event, params maps parameters to attributes)", kindName(v))
			continue
		}
		if isNull(v) {
			d.errorf(pe.key, field, "is empty; declare the values, e.g. {match: '[0-9]+'}, or remove it")
			continue
		}
		fs, ok := d.fields(v, field, paramFields)
		if !ok {
			continue
		}
		me, ok := fs["match"]
		if !ok {
			d.errorf(v, join(field, "match"), "is required: a regular expression every value matches as a whole, e.g. '[0-9]+'")
			continue
		}
		expr, ok := d.str(me.val, join(field, "match"), "a regular expression such as '[0-9]+'")
		if !ok {
			continue
		}
		decl, msg := d.compileParam(expr)
		if msg != "" {
			d.errorf(resolve(me.val), join(field, "match"), "%s", msg)
			continue
		}
		if f.decls == nil {
			f.decls, f.Params = map[string]*paramDecl{}, map[string]Param{}
		}
		f.decls[name], f.Params[name] = decl, decl.Param
	}
}

// compiled is a result of compileParam.
type compiled struct {
	decl *paramDecl
	msg  string
}

// compileParam is compileParam, once per expression.
func (d *decoder) compileParam(expr string) (*paramDecl, string) {
	if c, ok := d.decls[expr]; ok {
		return c.decl, c.msg
	}
	decl, msg := compileParam(Param{Match: expr})
	if d.decls == nil {
		d.decls = map[string]compiled{}
	}
	d.decls[expr] = compiled{decl, msg}
	return decl, msg
}

// entries returns the pairs of mapping n in file order. It reports a node
// that is not a mapping, keys that are not scalars, merge keys and duplicate
// keys (skipping the duplicates), and returns ok=false only for a non-mapping.
func (d *decoder) entries(n *yaml.Node, path string) ([]entry, bool) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		if path == "" {
			d.errorf(n, path, "a policy must be a mapping with version, classes and families, not %s", kindName(n))
		} else {
			d.errorf(n, path, "must be a mapping of names to settings, not %s", kindName(n))
		}
		return nil, false
	}
	var ents []entry
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode:
			d.errorf(k, path, "keys must be plain names, not %s", kindName(k))
		case k.Tag == "!!merge":
			d.errorf(k, path, "merge keys (<<) are not supported; write the fields out")
		case seen[k.Value] != nil:
			d.errorf(k, join(path, k.Value), "duplicate key %q (first at line %d); remove one", k.Value, seen[k.Value].Line)
		default:
			seen[k.Value] = k
			ents = append(ents, entry{key: k, val: v})
		}
	}
	return ents, true
}

// fields is entries for a mapping with a fixed set of known field names;
// unknown fields are reported.
func (d *decoder) fields(n *yaml.Node, path string, known []string) (map[string]entry, bool) {
	ents, ok := d.entries(n, path)
	if !ok {
		return nil, false
	}
	m := make(map[string]entry, len(ents))
	for _, e := range ents {
		if !slices.Contains(known, e.key.Value) {
			d.errorf(e.key, join(path, e.key.Value), "unknown field %q; known fields: %s", e.key.Value, strings.Join(known, ", "))
			continue
		}
		m[e.key.Value] = e
	}
	return m, true
}

// optionalFields is fields where a null value means no fields ("standard:").
func (d *decoder) optionalFields(n *yaml.Node, path string, known []string) (map[string]entry, bool) {
	if isNull(resolve(n)) {
		return map[string]entry{}, true
	}
	return d.fields(n, path, known)
}

// The opt* helpers decode the optional field name of fs into *dst when it is
// present and passes check (which returns "" for a good value). They report
// true when *dst was set.

func (d *decoder) optDuration(fs map[string]entry, path, name string, dst *time.Duration, check func(time.Duration) string) bool {
	e, ok := fs[name]
	if !ok {
		return false
	}
	field := join(path, name)
	n, ok := d.scalar(e.val, field, `a duration such as "5m" or "250ms"`)
	if !ok {
		return false
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.errorf(n, field, "invalid duration %q; use a Go duration such as \"5m\" or \"250ms\"", n.Value)
		return false
	}
	return set(d, n, field, dst, v, check)
}

func (d *decoder) optFloat(fs map[string]entry, path, name string, dst *float64, check func(float64) string) bool {
	e, ok := fs[name]
	if !ok {
		return false
	}
	field := join(path, name)
	n, ok := d.scalar(e.val, field, "a number such as 0.1")
	if !ok {
		return false
	}
	var v float64
	if tag := n.ShortTag(); tag != "!!float" && tag != "!!int" {
		d.errorf(n, field, "invalid number %q; use a number such as 0.1", n.Value)
		return false
	}
	if err := n.Decode(&v); err != nil {
		d.errorf(n, field, "invalid number %q; use a number such as 0.1", n.Value)
		return false
	}
	return set(d, n, field, dst, v, check)
}

func (d *decoder) optInt(fs map[string]entry, path, name string, dst *int, check func(int) string) bool {
	e, ok := fs[name]
	if !ok {
		return false
	}
	field := join(path, name)
	v, ok := d.int(e.val, field)
	if !ok {
		return false
	}
	return set(d, resolve(e.val), field, dst, v, check)
}

func (d *decoder) optString(fs map[string]entry, path, name string, dst *string, check func(string) string) bool {
	e, ok := fs[name]
	if !ok {
		return false
	}
	field := join(path, name)
	v, ok := d.str(e.val, field, "a string")
	if !ok {
		return false
	}
	return set(d, resolve(e.val), field, dst, v, check)
}

// set stores v in *dst if check passes, else reports the problem at n.
func set[T any](d *decoder, n *yaml.Node, field string, dst *T, v T, check func(T) string) bool {
	if msg := check(v); msg != "" {
		d.errorf(n, field, "%s", msg)
		return false
	}
	*dst = v
	return true
}

// int decodes an integer scalar.
func (d *decoder) int(n *yaml.Node, field string) (int, bool) {
	n, ok := d.scalar(n, field, "an integer")
	if !ok {
		return 0, false
	}
	// yaml.v3 would truncate 1.5 into an int; accept only integers.
	var v int
	if n.ShortTag() != "!!int" {
		d.errorf(n, field, "invalid integer %q", n.Value)
		return 0, false
	}
	if err := n.Decode(&v); err != nil {
		d.errorf(n, field, "invalid integer %q", n.Value)
		return 0, false
	}
	return v, true
}

// str decodes a string scalar; what describes the expected value.
func (d *decoder) str(n *yaml.Node, field, what string) (string, bool) {
	n, ok := d.scalar(n, field, what)
	if !ok {
		return "", false
	}
	return n.Value, true
}

// scalar returns n when it is a non-null scalar, else reports it.
func (d *decoder) scalar(n *yaml.Node, field, what string) (*yaml.Node, bool) {
	n = resolve(n)
	switch {
	case n.Kind != yaml.ScalarNode:
		d.errorf(n, field, "must be %s, not %s", what, kindName(n))
		return nil, false
	case isNull(n):
		d.errorf(n, field, "is empty; give %s", what)
		return nil, false
	}
	return n, true
}

// resolve follows aliases (*anchor) to the node they stand for.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is an empty or null scalar ("key:" or "~").
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// kindName describes a node's kind for error messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "an empty value"
		}
		return fmt.Sprintf("the value %q", n.Value)
	default:
		return "an unexpected YAML node"
	}
}

// join appends name to a dotted field path.
func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
