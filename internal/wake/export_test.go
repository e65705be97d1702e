package wake

import "time"

// SetBusyHold sets how long p holds its next push after one that found a
// list full (busyHold), for tests.
func SetBusyHold(p *Pusher, d time.Duration) { p.hold = d }
