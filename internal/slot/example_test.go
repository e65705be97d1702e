package slot_test

import (
	"fmt"
	"slices"

	"github.com/invalidator/invalidator/internal/slot"
)

func ExampleOf() {
	fmt.Println(slot.Of("foo"))
	fmt.Println(slot.Of("{user1000}.following") == slot.Of("{user1000}.followers"))
	// Output:
	// 12182
	// true
}

func ExampleGroup() {
	groups := slot.Group([]string{"{user:1}:profile", "session:9", "{user:1}:posts"})

	// Map order is random; sort the slots for a stable listing.
	slots := make([]int, 0, len(groups))
	for s := range groups {
		slots = append(slots, s)
	}
	slices.Sort(slots)
	for _, s := range slots {
		fmt.Println(s, groups[s])
	}
	// Output:
	// 9684 [session:9]
	// 10778 [{user:1}:profile {user:1}:posts]
}
