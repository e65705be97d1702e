//go:build !race

package cacheaside_test

// raceEnabled reports whether the tests run under the race detector, which
// slows them several times over.
const raceEnabled = false
