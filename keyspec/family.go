package keyspec

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Strategy is how a family's cache entries are invalidated.
type Strategy string

const (
	// StrategyDelete invalidates by deleting the keys (UNLINK, or SCAN MATCH
	// plus UNLINK for a pattern).
	StrategyDelete Strategy = "delete"
	// StrategyVersion invalidates by advancing a version key: data lives at a
	// key that includes the version, so a bump orphans old data at once, and
	// the orphans expire by TTL. Use it when one write invalidates many keys
	// (a feed's pages), where a pattern delete would be slow.
	StrategyVersion Strategy = "version"
)

// valid reports whether s is a known strategy.
func (s Strategy) valid() bool { return s == StrategyDelete || s == StrategyVersion }

var (
	familyNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	classNameRE  = regexp.MustCompile(`^[a-z0-9_-]+$`)
)

// MaxJitter is the largest allowed TTL jitter fraction. Beyond it the
// shortest TTL would be less than a third of the longest, which hides a
// misconfigured TTL rather than spreading expiry.
const MaxJitter = 0.5

// FamilyOptions are a family's settings besides its name and template:
// what NewFamily takes, and what a Family holds (embedded), with its
// defaults filled in and, for a policy file's family, its class's TTL and
// jitter inherited.
type FamilyOptions struct {
	// Class is the name of the family's freshness class. A policy file's
	// family names one; "" (NewFamily only) means the policy's default
	// class.
	Class string
	// TTL of cache entries; 0 means no expiry. A policy file's family
	// without a ttl takes its class's; NewFamily takes it as given, with
	// no policy to look a class TTL up in.
	TTL time.Duration
	// Jitter is the TTL jitter fraction in [0, MaxJitter], resolved like
	// TTL.
	Jitter float64
	// Strategy is how the family is invalidated; "" means StrategyDelete.
	Strategy Strategy
	// HashTag is the name of the template parameter that becomes the Redis
	// Cluster hash tag: its value is wrapped in braces in the key, so all keys
	// of one entity share a cluster slot. "" means none.
	HashTag string
	// Owner is the optional team or person owning the key convention, for
	// humans.
	Owner string
	// Mode is the rollout phase: enforce, shadow or off; "" means
	// ModeEnforce.
	Mode Mode
	// MaxKeys caps the keys one pattern delete may remove; 0 means no cap.
	// For a version family it caps the version keys one delete of them
	// removes (invalidator cdc deletes them all for a TRUNCATE).
	// A scan that would exceed it stops and goes to the dead letter with
	// the counts, its cursor kept, so an operator decides whether to resume
	// it (invalidator dead retry --force) instead of a typo wiping half the
	// cache.
	MaxKeys int
	// Params declares the values of template parameters, by name; a
	// parameter left out takes any value. See Param.
	Params map[string]Param
}

// Family is a declared set of cache keys that share a template, such as every
// "user:{id}:profile" key. Invalidations address a family plus parameter
// values, never free-form patterns, so a pattern delete can only ever touch
// keys of one declared shape. A Family is immutable after it is built and safe
// for concurrent use; do not change its fields. Build one with NewFamily or
// a policy file, which check its settings and compile its Params: a Family
// literal enforces no Params.
type Family struct {
	// Name of the family, [A-Za-z0-9_.-]+.
	Name string
	// Template renders the family's keys.
	Template *Template
	// FamilyOptions are the family's settings, resolved: Strategy and Mode
	// are never "".
	FamilyOptions
	// Audit is the family's audit section; nil when it declares none.
	Audit *Audit

	// decls holds the compiled Params, by parameter name.
	decls map[string]*paramDecl
}

// NewFamily builds and validates a family outside a policy file, for code
// and tests. The strategy defaults to delete, the mode to enforce.
func NewFamily(name, template string, opts FamilyOptions) (*Family, error) {
	if msg := checkFamilyName(name); msg != "" {
		return nil, fmt.Errorf("family %q: %s", name, msg)
	}
	t, err := ParseTemplate(template)
	if err != nil {
		return nil, fmt.Errorf("family %q: %w", name, err)
	}
	if opts.Strategy == "" {
		opts.Strategy = StrategyDelete
	}
	if opts.Mode == "" {
		opts.Mode = ModeEnforce
	}
	// The family keeps its own copy: a caller changing its map afterwards
	// must not change what the family declares.
	opts.Params = maps.Clone(opts.Params)
	f := &Family{Name: name, Template: t, FamilyOptions: opts}
	if opts.Class != "" {
		if msg := checkClassName(opts.Class); msg != "" {
			return nil, fmt.Errorf("family %q: class: %s", name, msg)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(opts.Params)) {
		if !t.HasParam(name) {
			return nil, fmt.Errorf("family %q: params: %q is not a parameter of template %q (parameters: %s)", f.Name, name, t.String(), paramList(t))
		}
		d, msg := compileParam(opts.Params[name])
		if msg != "" {
			return nil, fmt.Errorf("family %q: params.%s: %s", f.Name, name, msg)
		}
		if f.decls == nil {
			f.decls = map[string]*paramDecl{}
		}
		f.decls[name] = d
	}
	for _, msg := range []string{
		checkTTL(f.TTL),
		checkJitter(f.Jitter),
		checkStrategy(f.Strategy),
		checkHashTagParam(t, f.HashTag),
		checkMode(f.Mode),
		checkMaxKeys(f.MaxKeys),
	} {
		if msg != "" {
			return nil, fmt.Errorf("family %q: %s", name, msg)
		}
	}
	return f, nil
}

// Field checks shared by NewFamily and the policy loader. Each returns "" when
// the value is fine, else a message that says how to fix it.

func checkMaxKeys(n int) string {
	if n < 0 {
		return fmt.Sprintf("max_keys %d is negative; use 0 for no cap", n)
	}
	return ""
}

func checkFamilyName(name string) string {
	if !familyNameRE.MatchString(name) {
		return fmt.Sprintf("invalid family name %q; use letters, digits, '_', '.' and '-'", name)
	}
	return ""
}

func checkClassName(name string) string {
	if !classNameRE.MatchString(name) {
		return fmt.Sprintf("invalid class name %q; use lowercase letters, digits, '_' and '-'", name)
	}
	return ""
}

func checkTTL(d time.Duration) string {
	if d < 0 {
		return fmt.Sprintf("ttl %s is negative; use 0 for no expiry", d)
	}
	return ""
}

func checkJitter(j float64) string {
	// Written so that NaN fails too.
	if !(j >= 0 && j <= MaxJitter) {
		return fmt.Sprintf("jitter %v is outside [0, %v]; it is a fraction of the TTL, e.g. 0.1", j, MaxJitter)
	}
	return ""
}

func checkStrategy(s Strategy) string {
	if !s.valid() {
		return fmt.Sprintf("unknown strategy %q; use %q or %q", s, StrategyDelete, StrategyVersion)
	}
	return ""
}

func checkHashTagParam(t *Template, hashTag string) string {
	if hashTag != "" && !t.HasParam(hashTag) {
		return fmt.Sprintf("hash_tag %q is not a parameter of template %q (parameters: %s)",
			hashTag, t.String(), paramList(t))
	}
	return ""
}

// paramList formats the template's parameters for error messages.
func paramList(t *Template) string {
	if len(t.params) == 0 {
		return "none"
	}
	return strings.Join(t.params, ", ")
}

// Key renders the family's full key. Every template parameter must be given
// (ErrMissingParam), no others (ErrUnknownParam), none empty
// (ErrEmptyParam), and each must match its declaration, if it has one
// (ErrInvalidParam). Values are inserted verbatim: a key is bytes, and any
// byte is allowed in an undeclared value. The value of the HashTag
// parameter is wrapped in braces, so "user:{id}:profile" with id=42
// renders "user:{42}:profile".
func (f *Family) Key(params map[string]string) (string, error) {
	if err := f.checkParams("render", params, true); err != nil {
		return "", err
	}
	return f.render(params), nil
}

// render builds the key of fully checked params.
func (f *Family) render(params map[string]string) string {
	var b strings.Builder
	for _, s := range f.Template.segs {
		switch {
		case !s.isParam:
			b.WriteString(s.text)
		case s.text == f.HashTag:
			b.WriteByte('{')
			b.WriteString(params[s.text])
			b.WriteByte('}')
		default:
			b.WriteString(params[s.text])
		}
	}
	return b.String()
}

// checkParams refuses unknown parameters, empty values, values that would
// move the hash tag and, when all is set, missing parameters. op names the
// operation in error messages ("render", "pattern").
func (f *Family) checkParams(op string, params map[string]string, all bool) error {
	t := f.Template
	for _, name := range slices.Sorted(maps.Keys(params)) {
		if !t.HasParam(name) {
			return fmt.Errorf("%s family %q: %w %q: template %q has parameters %s",
				op, f.Name, ErrUnknownParam, name, t.String(), paramList(t))
		}
	}
	for _, name := range t.params {
		v, ok := params[name]
		if !ok {
			if all {
				return fmt.Errorf("%s family %q: %w %q: template %q needs %s",
					op, f.Name, ErrMissingParam, name, t.String(), paramList(t))
			}
			continue
		}
		if v == "" {
			return fmt.Errorf("%s family %q: %w for %q: give the value the cache key was written with",
				op, f.Name, ErrEmptyParam, name)
		}
		if d := f.decls[name]; d != nil && !d.match(v) {
			return fmt.Errorf("%s family %q: %w: parameter %q value %s does not match its declaration %q in the policy; "+
				"fix the value, or widen the declaration if such keys exist",
				op, f.Name, ErrInvalidParam, name, quoteValue(v), d.Match)
		}
	}
	return f.checkHashTag(op, params)
}

// quoteValue quotes a parameter value for an error message, cut short if
// it is long: it may be anything a caller passed.
func quoteValue(v string) string {
	const limit = 64
	if len(v) > limit {
		return fmt.Sprintf("%q... (%d bytes)", v[:limit], len(v))
	}
	return fmt.Sprintf("%q", v)
}

// checkHashTag makes sure the braces around the HashTag value are the ones
// Redis Cluster hashes: the hash tag is the text between the first '{' and the
// first '}' after it. A '{' in an earlier value or a '}' in the tagged value
// would make Redis hash other bytes, so one entity's keys (and a version
// family's version and data keys) could land in different slots.
func (f *Family) checkHashTag(op string, params map[string]string) error {
	if f.HashTag == "" {
		return nil
	}
	for _, name := range f.Template.params {
		v := params[name]
		if name == f.HashTag {
			if strings.Contains(v, "}") {
				return fmt.Errorf("%s family %q: %w: the value of hash-tag parameter %q contains '}'",
					op, f.Name, ErrUnsafeHashTag, name)
			}
			return nil
		}
		if strings.Contains(v, "{") {
			return fmt.Errorf("%s family %q: %w: the value of %q contains '{' and comes before hash-tag parameter %q",
				op, f.Name, ErrUnsafeHashTag, name, f.HashTag)
		}
	}
	return nil
}
