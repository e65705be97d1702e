package slot_test

import (
	"fmt"

	"github.com/invalidator/invalidator/internal/slot"
)

func ExampleOf() {
	fmt.Println(slot.Of("foo"))
	fmt.Println(slot.Of("{user1000}.following") == slot.Of("{user1000}.followers"))
	// Output:
	// 12182
	// true
}
