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
