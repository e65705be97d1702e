package tasks_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/invalidator/invalidator/tasks"
)

func Example() {
	// Producer, right after the write commits.
	payload, err := tasks.Marshal(tasks.DeleteKeys{
		Keys: []string{"user:42", "user:42:friends", "bin:\xff\x00"},
	})
	if err != nil {
		panic(err)
	}

	// Worker, given the asynq task type and payload.
	t, err := tasks.Unmarshal(tasks.KindDeleteKeys, payload)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q\n", t.(tasks.DeleteKeys).Keys)
	fmt.Println(tasks.Describe(tasks.KindDeleteKeys, payload))
	// Output:
	// ["user:42" "user:42:friends" "bin:\xff\x00"]
	// 3 keys, first "user:42"
}

func ExampleDescribe() {
	payload, err := tasks.Marshal(tasks.BumpVersion{
		Family: "user_profile",
		Params: map[string]string{"id": "42", "locale": "en-US"},
		Target: "sessions",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(tasks.Describe(tasks.KindBumpVersion, payload))
	fmt.Println(tasks.Describe(tasks.KindBumpVersion, payload[:9]))
	fmt.Println(tasks.Describe("email:send", payload))
	// Output:
	// family=user_profile id=42 locale=en-US (target sessions)
	// undecodable payload (9 bytes): target: length 8 exceeds remaining 5 bytes: malformed payload
	// unknown kind "email:send" (46 bytes)
}

func ExampleSplitKeys() {
	keys := make([]string, 2500)
	for i := range keys {
		keys[i] = fmt.Sprintf("order:%d", i)
	}
	chunks, err := tasks.SplitKeys(keys)
	if err != nil {
		panic(err)
	}
	for _, c := range chunks {
		fmt.Println(len(c), c[0])
	}
	// Output:
	// 1000 order:0
	// 1000 order:1000
	// 500 order:2000
}

func ExampleUnmarshal_errors() {
	// A worker sorts a failed decode into poison (archive now) and "newer
	// format" (retry: a newer worker can run it).
	newer := []byte{0xC1, tasks.FormatVersion + 1, 1}
	for _, payload := range [][]byte{newer, []byte(`{"keys":["user:42"]}`)} {
		_, err := tasks.Unmarshal(tasks.KindDeleteKeys, payload)
		switch {
		case errors.Is(err, tasks.ErrNewerFormat):
			fmt.Println("retry:", strings.Contains(err.Error(), "upgrade the worker"))
		case errors.Is(err, tasks.ErrMalformed):
			fmt.Println("poison:", err)
		}
	}
	// Output:
	// retry: true
	// poison: decode invalidate:keys payload: bad magic byte 0x7b, want 0xc1 (not written by this package): malformed payload
}
