package keyspec_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/keyspec"
)

func TestHumanDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                            "0s",
		7 * 24 * time.Hour:           "7 days",
		24 * time.Hour:               "1 day",
		time.Hour:                    "1h",
		90 * time.Minute:             "1h 30min",
		5 * time.Minute:              "5min",
		time.Second:                  "1s",
		1500 * time.Millisecond:      "1.5s",
		250 * time.Millisecond:       "250ms",
		25*time.Hour + 2*time.Second: "25h 2s",
		-time.Minute:                 "-1min",
	} {
		require.Equal(t, want, keyspec.HumanDuration(d), "%s", d)
	}
}

// What --help and policy doc show is taken back as it reads.
func TestParseHumanDurationReadsWhatHumanDurationWrites(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, 7 * 24 * time.Hour, 24 * time.Hour, time.Hour, 90 * time.Minute,
		5 * time.Minute, time.Second, 1500 * time.Millisecond, 250 * time.Millisecond, 25*time.Hour + 2*time.Second,
		-time.Minute, 3 * time.Microsecond} {
		got, err := keyspec.ParseHumanDuration(keyspec.HumanDuration(d))
		require.NoError(t, err, "%s", keyspec.HumanDuration(d))
		require.Equal(t, d, got, "%s", keyspec.HumanDuration(d))
	}
	for s, want := range map[string]time.Duration{"1m30s": 90 * time.Second, "2 days": 48 * time.Hour, " 1h  30min ": 90 * time.Minute} {
		got, err := keyspec.ParseHumanDuration(s)
		require.NoError(t, err, s)
		require.Equal(t, want, got, s)
	}
	for _, s := range []string{"", "-", "min", "1 fortnight", "1..5s", "5", "1h x", "99999999999999 days"} {
		_, err := keyspec.ParseHumanDuration(s)
		require.Error(t, err, "%q", s)
	}
}

// FuzzParseHumanDuration reads duration flags and env vars: whatever it
// accepts, HumanDuration writes back to the same duration.
func FuzzParseHumanDuration(f *testing.F) {
	for _, s := range []string{"1min", "1h 30min", "7 days", "1.5s", "250ms", "-1min", "90s", "3µs", "1 day"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := keyspec.ParseHumanDuration(s)
		if err != nil {
			return
		}
		if d%time.Millisecond != 0 && (d > time.Millisecond || d < -time.Millisecond) {
			return // HumanDuration rounds sub-millisecond parts of longer durations to float seconds
		}
		back, err := keyspec.ParseHumanDuration(keyspec.HumanDuration(d))
		if err != nil || back != d {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, d, keyspec.HumanDuration(d), back, err)
		}
	})
}
