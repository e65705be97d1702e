package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
)

// Compare is how a cached value is compared with the source's.
type Compare string

const (
	// CompareBytes: equal when the bytes are equal. The default.
	CompareBytes Compare = "bytes"
	// CompareJSON: equal when both are the same JSON value (object key
	// order, white space and number spelling aside: 1.0 equals 1), or,
	// with Check.Fields, when both are objects that agree on those
	// top-level fields.
	CompareJSON Compare = "json"
)

// Valid reports whether c is a known compare mode ("" is CompareBytes).
func (c Compare) Valid() bool { return c == "" || c == CompareBytes || c == CompareJSON }

// equal reports whether the cached bytes match the source's answer. A
// source that has no such entity never matches a cached value.
func equal(mode Compare, fields []string, cached, src []byte, found bool) bool {
	if !found {
		return false
	}
	if mode != CompareJSON {
		return bytes.Equal(cached, src)
	}
	a, errA := decodeJSON(cached)
	b, errB := decodeJSON(src)
	if errA != nil || errB != nil {
		// Not JSON on one side: only identical bytes are equal.
		return errA != nil && errB != nil && bytes.Equal(cached, src)
	}
	if len(fields) == 0 {
		return jsonEqual(a, b)
	}
	oa, okA := a.(map[string]any)
	ob, okB := b.(map[string]any)
	if !okA || !okB {
		return false
	}
	for _, f := range fields {
		va, inA := oa[f]
		vb, inB := ob[f]
		if inA != inB || inA && !jsonEqual(va, vb) {
			return false
		}
	}
	return true
}

func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // ids beyond 2^53 must not compare equal by rounding
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

func jsonEqual(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, va := range a {
			vb, ok := b[k]
			if !ok || !jsonEqual(va, vb) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		return ok && slices.EqualFunc(a, b, jsonEqual)
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		if a == b {
			return true
		}
		ra, okA := new(big.Rat).SetString(string(a))
		rb, okB := new(big.Rat).SetString(string(b))
		return okA && okB && ra.Cmp(rb) == 0
	default: // string, bool, nil
		return a == b
	}
}
