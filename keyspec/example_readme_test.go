package keyspec_test

// The README's code, compiled (see examples/readme_test.go).

//lint:file-ignore SA4006 the README shows the calls; an application checks each err

import (
	"math/rand/v2"

	"github.com/invalidator/invalidator/keyspec"
)

// README, rendering cache keys with the family definitions.
func Example_readmeKeys() {
	policy := keyspec.Default()
	rng := rand.New(rand.NewPCG(1, 2))

	profile, err := policy.Family("user_profile")
	key, err := profile.Key(map[string]string{"id": "42"}) // "user:{42}:profile"
	ttl := profile.JitteredTTL(rng)                        // class TTL ± jitter

	_, _, _ = key, ttl, err
}
