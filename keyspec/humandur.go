package keyspec

import (
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
