package tasks

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// DeleteFamily deletes every key of a key family whose parameters match
// Params (SCAN MATCH on every master, then chunked UNLINK). Parameters left
// out of Params are wildcards; the family is resolved against the worker's
// policy, which refuses an empty or all-wildcard pattern.
type DeleteFamily struct {
	// Family names a key family declared in the policy; not empty.
	Family string
	// Params fixes some family parameters, name to value. Names are made of
	// [A-Za-z0-9_]; values are any non-empty bytes up to MaxKeyBytes.
	Params map[string]string
	// Target names the cache target; "" means the worker's default cache.
	Target string
	// EnqueuedAt is stamped by the producer so the worker can measure lag.
	// The zero time is allowed and means "unknown".
	EnqueuedAt time.Time
}

// Kind returns KindDeleteFamily.
func (DeleteFamily) Kind() string { return KindDeleteFamily }

// Validate checks the family name, the parameters, the target and that the
// encoded payload fits MaxPayloadBytes.
func (t DeleteFamily) Validate() error {
	if err := validateFamily(t.Family, t.Params, t.Target, t.EnqueuedAt); err != nil {
		return fmt.Errorf("%s task: %w", KindDeleteFamily, err)
	}
	return nil
}

// BumpVersion advances the version of a versioned family instance, which
// orphans every key built on the old version (they expire by TTL). The worker
// sets version := max(version+1, Redis TIME in µs), and a missing version key
// restarts keyspec.VersionRestartMargin above TIME, so a version key lost to
// eviction restarts above every old version.
type BumpVersion struct {
	// Family names a versioned key family declared in the policy; not empty.
	Family string
	// Params picks the family instance, name to value. Names are made of
	// [A-Za-z0-9_]; values are any non-empty bytes up to MaxKeyBytes.
	Params map[string]string
	// Target names the cache target; "" means the worker's default cache.
	Target string
	// EnqueuedAt is stamped by the producer so the worker can measure lag.
	// The zero time is allowed and means "unknown".
	EnqueuedAt time.Time
}

// Kind returns KindBumpVersion.
func (BumpVersion) Kind() string { return KindBumpVersion }

// Validate checks the family name, the parameters, the target and that the
// encoded payload fits MaxPayloadBytes.
func (t BumpVersion) Validate() error {
	if err := validateFamily(t.Family, t.Params, t.Target, t.EnqueuedAt); err != nil {
		return fmt.Errorf("%s task: %w", KindBumpVersion, err)
	}
	return nil
}

// validateFamily holds the rules DeleteFamily and BumpVersion share.
func validateFamily(family string, params map[string]string, target string, at time.Time) error {
	return validateNamed("family name", family, params, target, at)
}

// validateNamed holds the rules of the name-plus-parameters layout that
// DeleteFamily, BumpVersion and Event share; what names the name field.
func validateNamed(what, name string, params map[string]string, target string, at time.Time) error {
	if name == "" {
		return fmt.Errorf("empty %s: %w", what, ErrInvalid)
	}
	if len(name) > MaxKeyBytes {
		return fmt.Errorf("%s of %d bytes exceeds MaxKeyBytes (%d): %w", what, len(name), MaxKeyBytes, ErrInvalid)
	}
	// Sorted so the first bad parameter reported is the same on every run.
	for _, p := range sortedNames(params) {
		if err := validateParam(p, params[p]); err != nil {
			return fmt.Errorf("%s %s: %w", strings.TrimSuffix(what, " name"), quote(name), err)
		}
	}
	if err := validateCommon(target, at); err != nil {
		return err
	}
	if n := familyEncodedLen(name, params, target, at); n > MaxPayloadBytes {
		return fmt.Errorf("encoded payload of %d bytes exceeds MaxPayloadBytes (%d): %w", n, MaxPayloadBytes, ErrInvalid)
	}
	return nil
}

func validateParam(name, value string) error {
	if name == "" {
		return fmt.Errorf("empty parameter name: %w", ErrInvalid)
	}
	if !isWord(name) {
		return fmt.Errorf("parameter name %s: want letters, digits and '_' only: %w", quote(name), ErrInvalid)
	}
	if value == "" {
		return fmt.Errorf("parameter %q: empty value (leave the parameter out to match any value): %w", name, ErrInvalid)
	}
	if len(value) > MaxKeyBytes {
		return fmt.Errorf("parameter %q: value of %d bytes exceeds MaxKeyBytes (%d): %w", name, len(value), MaxKeyBytes, ErrInvalid)
	}
	return nil
}

// sortedNames returns the parameter names in ascending byte order, the order
// the codec writes them in.
func sortedNames(params map[string]string) []string {
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// isWord reports whether s is made of [A-Za-z0-9_] only.
func isWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
