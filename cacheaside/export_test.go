package cacheaside

// OnFlight makes c call f each time a read has started or joined its
// singleflight flight, so a test can wait until a second read has joined a
// load in progress instead of sleeping. Call it before c's first read.
func OnFlight(c *Cache, f func()) { c.onFlight = f }
