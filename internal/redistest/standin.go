package redistest

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
)

// StandIn stands in for a *testing.T where a test needs to watch another
// "test" fail, and in examples, which get no *testing.T. Methods it does not
// override hit the nil embedded interface and panic, which flags any use the
// harness was not expected to make.
type StandIn struct {
	testing.TB
	name string

	mu       sync.Mutex
	cleanups []func() // guarded by mu
	fatal    string   // guarded by mu: the Fatalf message, if any
}

// NewStandIn returns a stand-in named like a test.
func NewStandIn(name string) *StandIn { return &StandIn{name: name} }

// Helper does nothing: a stand-in has no call stack to trim.
func (f *StandIn) Helper() {}

// Name returns the name given to NewStandIn.
func (f *StandIn) Name() string { return f.name }

// Cleanup registers fn to run, last first, when Run returns.
func (f *StandIn) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// Fatalf records the message and stops the calling goroutine, as testing does.
func (f *StandIn) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// Run calls fn on its own goroutine, so that Fatalf can end it, then runs
// the cleanups, and returns the Fatalf message ("" if fn did not fail).
//
//	func Example() {
//		redistest.NewStandIn("Example").Run(func(t testing.TB) {
//			rdb := redistest.Client(t)
//			...
//		})
//	}
func (f *StandIn) Run(fn func(t testing.TB)) string {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range slices.Backward(f.cleanups) {
		c()
	}
	f.cleanups = nil
	return f.fatal
}
