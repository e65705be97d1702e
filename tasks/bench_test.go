package tasks

import (
	"fmt"
	"testing"
	"time"
)

// benchKeys returns n realistic cache keys.
func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:{%d}:profile", 1000000+i)
	}
	return keys
}

func BenchmarkMarshal(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			t := DeleteKeys{Keys: benchKeys(n), Target: "sessions", EnqueuedAt: time.Now()}
			payload, err := Marshal(t)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Marshal(t); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			payload, err := Marshal(DeleteKeys{Keys: benchKeys(n), Target: "sessions", EnqueuedAt: time.Now()})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Unmarshal(KindDeleteKeys, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
