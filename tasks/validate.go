package tasks

import (
	"fmt"
	"math"
	"time"
)

// validateCommon checks the fields every task has.
func validateCommon(target string, at time.Time) error {
	if err := validateTarget(target); err != nil {
		return err
	}
	// The codec stores Unix nanoseconds in an int64, which spans the years
	// 1677 to 2262; a time outside that range has no encoding.
	if !at.IsZero() && (at.Before(time.Unix(0, math.MinInt64)) || at.After(time.Unix(0, math.MaxInt64))) {
		return fmt.Errorf("enqueued-at time %s is outside the years 1678-2262: %w", at.UTC().Format(time.RFC3339), ErrInvalid)
	}
	return nil
}

// validateTarget checks a target name: "" (the worker's default cache) or
// [A-Za-z0-9_.-]+ of at most MaxTargetBytes.
func validateTarget(target string) error {
	if len(target) > MaxTargetBytes {
		return fmt.Errorf("target name of %d bytes exceeds MaxTargetBytes (%d): %w", len(target), MaxTargetBytes, ErrInvalid)
	}
	for i := 0; i < len(target); i++ {
		c := target[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("target name %s: want letters, digits, '_', '.' and '-' only: %w", quote(target), ErrInvalid)
		}
	}
	return nil
}
