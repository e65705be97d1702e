package keyspec

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A pair of families the search cannot decide within its bound is neither
// passed as disjoint nor reported with a made-up example: it is a warning
// that names both and says what to simplify. The bound is lowered here so
// that small families hit it.
func TestUndecidedPairsAreWarnings(t *testing.T) {
	t.Parallel()

	// Both declarations run through 30 bytes of [ab] before they differ,
	// so the search visits more pairs of states than the bound of 10.
	src := `version: 1
classes: {standard: {ttl: 1m}}
families:
  left: {template: "x:{a}", class: standard, params: {a: {match: '[ab]{1,30}c'}}}
  right: {template: "x:{b}", class: standard, params: {b: {match: '[ab]{1,30}d'}}}
`
	d := &decoder{file: "p.yaml", searchLimit: 10}
	p := d.decode([]byte(src))
	require.Empty(t, d.errs, "an undecided pair is no collision")
	require.Len(t, p.warns, 1)
	require.Equal(t, `p.yaml:5:3: families.right: could not decide whether family "right" can render the same key as family "left": `+
		`their keys are too complex to compare; simplify the declarations (params) of "right" and "left", or make their literal text differ`,
		p.warns[0].Error())
	// With the real bound it is decided: no key fits both.
	p, err := Parse("p.yaml", []byte(src))
	require.NoError(t, err)
	require.Empty(t, p.Warnings())

	// A capture the search cannot decide is a warning of its own, in
	// each direction, and no capture with a made-up example.
	src = `version: 1
classes: {standard: {ttl: 1m}}
families:
  all: {template: "y:{a}", class: standard}
  some: {template: "y:{b}:z", class: standard, params: {b: {match: '[ab]{1,30}c'}}}
`
	p, err = Parse("p.yaml", []byte(src))
	require.NoError(t, err)
	caps, undecided := p.captureMap(10)
	require.Empty(t, caps)
	require.Equal(t, [][2]string{{"all", "some"}, {"some", "all"}}, undecided)
	var got []string
	for _, w := range p.warnings(10) {
		got = append(got, w.Error())
	}
	require.Equal(t, []string{
		`p.yaml:4:3: families.all: could not decide whether a pattern delete of family "all" (y:*) also matches keys of family "some": ` +
			`their keys are too complex to compare; simplify the declarations (params) of "all" and "some"`,
		`p.yaml:5:3: families.some: could not decide whether a pattern delete of family "some" (y:*:z) also matches keys of family "all": ` +
			`their keys are too complex to compare; simplify the declarations (params) of "some" and "all"`,
	}, got)
	// Decided, the delete of "all" takes the keys of "some".
	caps, undecided = p.captureMap(0)
	require.Empty(t, undecided)
	require.Equal(t, map[string][]Capture{"all": {{"some", "y:ac:z"}}}, caps)
}
