package cacheaside

import "sync"

// flight is one fill in progress in this process, shared by the reads of
// its key that join it: singleflight, plus a way for joined reads to
// leave a load whose lease went (see gone).
type flight struct {
	done chan struct{} // closed when out and err are set
	out  outcome
	err  error
	// joins counts the reads that joined after the first. Guarded by
	// flights.mu; final once the flight is off the map, which is before
	// done closes.
	joins int
	// gone is closed when the flight's lease went mid-load (an
	// invalidation deleted it, or it lapsed and another reader may hold
	// the key): its value will not be stored, and reads that joined it
	// leave and read again rather than wait for it.
	gone     chan struct{}
	goneOnce sync.Once
}

// flights are the fills of one Cache in progress, by name.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight // guarded by mu
}

// join returns the flight in progress under name, or a new one that the
// caller must run (lead is true).
func (fs *flights) join(name string) (f *flight, lead bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.m[name]; ok {
		f.joins++
		return f, false
	}
	if fs.m == nil {
		fs.m = make(map[string]*flight)
	}
	f = &flight{done: make(chan struct{}), gone: make(chan struct{})}
	fs.m[name] = f
	return f, true
}

// run runs fill as f and ends f: off the map first, so no read joins it
// once its result is set.
func (fs *flights) run(name string, f *flight, fill func() (outcome, error)) {
	out, err := fill()
	fs.forget(name, f)
	f.out, f.err = out, err
	close(f.done)
}

// leave marks f gone and takes it off the map, so that the reads joined to
// it leave, and reads from now on start a flight of their own.
func (fs *flights) leave(name string, f *flight) {
	fs.forget(name, f)
	f.goneOnce.Do(func() { close(f.gone) })
}

// forget takes f off the map if it is still there.
func (fs *flights) forget(name string, f *flight) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.m[name] == f {
		delete(fs.m, name)
	}
}

// shared reports whether reads other than the first joined f. Call it
// after f is done.
func (f *flight) shared() bool { return f.joins > 0 }
