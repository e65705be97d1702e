package keyspec

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// HumanDuration writes d the way a person does, for documents and messages
// rather than for parsing back: "7 days", "1h", "1h 30min", "5min", "1.5s",
// "250ms". time.Duration's String gives "168h0m0s", "1h0m0s", "5m0s".
func HumanDuration(d time.Duration) string {
	if d < 0 {
		return "-" + HumanDuration(-d)
	}
	const day = 24 * time.Hour
	switch {
	case d == 0:
		return "0s"
	case d%day == 0:
		if n := d / day; n != 1 {
			return strconv.FormatInt(int64(n), 10) + " days"
		}
		return "1 day"
	case d < time.Millisecond:
		return d.String() // µs and ns: rare, and Go's form is fine
	case d < time.Second:
		return trimFloat(float64(d)/float64(time.Millisecond)) + "ms"
	}
	var parts []string
	if h := d / time.Hour; h > 0 {
		parts = append(parts, strconv.FormatInt(int64(h), 10)+"h")
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		parts = append(parts, strconv.FormatInt(int64(m), 10)+"min")
		d -= m * time.Minute
	}
	if d > 0 {
		parts = append(parts, trimFloat(d.Seconds())+"s")
	}
	return strings.Join(parts, " ")
}

// trimFloat formats f in the shortest form that reads back as f.
func trimFloat(f float64) string {
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// ParseHumanDuration reads a duration in Go's form ("90s", "1h30m") or in
// the form HumanDuration writes ("1min", "1h 30min", "7 days", "1.5s"), so
// a value copied from --help or policy doc is taken back as it reads.
func ParseHumanDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	bad := func() (time.Duration, error) {
		return 0, fmt.Errorf("duration %q: write it as Go does (90s, 1h30m) or as --help shows it (1min, 1h 30min, 7 days)", s)
	}
	rest := strings.TrimSpace(s)
	neg := strings.HasPrefix(rest, "-")
	rest = strings.TrimSpace(strings.TrimPrefix(rest, "-"))
	if rest == "" {
		return bad()
	}
	var total time.Duration
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		num, err := strconv.ParseFloat(rest[:i], 64)
		if i == 0 || err != nil {
			return bad()
		}
		rest = strings.TrimLeft(rest[i:], " ")
		j := 0
		for j < len(rest) && rest[j] != ' ' && (rest[j] < '0' || rest[j] > '9') {
			j++
		}
		unit, ok := humanUnits[rest[:j]]
		if !ok {
			return bad()
		}
		part := num * float64(unit)
		if part > float64(1<<62)-float64(total) { // far past any sane setting; no overflow
			return bad()
		}
		total += time.Duration(math.Round(part))
		rest = strings.TrimLeft(rest[j:], " ")
	}
	if neg {
		total = -total
	}
	return total, nil
}

// humanUnits are the units ParseHumanDuration reads: Go's, and the "min"
// and "day(s)" HumanDuration writes.
var humanUnits = map[string]time.Duration{
	"ns": time.Nanosecond, "us": time.Microsecond, "µs": time.Microsecond, "ms": time.Millisecond,
	"s": time.Second, "m": time.Minute, "min": time.Minute, "h": time.Hour,
	"day": 24 * time.Hour, "days": 24 * time.Hour,
}
