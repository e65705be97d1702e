package dashboard_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/dashboard"
	"github.com/invalidator/invalidator/tasks"
)

func ExampleRedactPayload() {
	payload, err := tasks.Marshal(tasks.DeleteKeys{
		Keys:       []string{"user:42:profile", "session:secret-token"},
		EnqueuedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(dashboard.RedactPayload(tasks.KindDeleteKeys, payload))
	fmt.Println(dashboard.RevealPayload(tasks.KindDeleteKeys, payload))
	fmt.Println(dashboard.RedactPayload(tasks.KindDeleteKeys, []byte("not a task")))
	// Output:
	// invalidate:keys: 2 keys, first "user:42:profile" (others hidden)
	// invalidate:keys: 2 keys ["user:42:profile" "session:secret-token"], enqueued 2026-01-02T03:04:05Z
	// undecodable (10 bytes)
}

func ExampleConfig_ValidateAccess() {
	err := dashboard.Config{Addr: "0.0.0.0:8080"}.ValidateAccess()
	fmt.Println(errors.Is(err, dashboard.ErrAuthRequired))
	err = dashboard.Config{Addr: "0.0.0.0:8080", Username: "ops", Password: "from-a-file"}.ValidateAccess()
	fmt.Println(err)
	err = dashboard.Config{Addr: "127.0.0.1:8080"}.ValidateAccess()
	fmt.Println(err)
	// Output:
	// true
	// <nil>
	// <nil>
}
