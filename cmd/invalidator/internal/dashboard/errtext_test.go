package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/dashboard"
	"github.com/invalidator/invalidator/tasks"
)

func TestRedactError(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`bump version of family "user_feed" (key "feed:{42}#ver"): connection refused`: `bump version of family "user_feed" (key <hidden, 13 bytes>): connection refused`,
		`max_keys reached: family "product_page" (pattern "product_page:7:*") stopped`: `max_keys reached: family "product_page" (pattern <hidden, 16 bytes>) stopped`,
		`parameter "id" value "alice" does not match`:                                  `parameter "id" value <hidden, 5 bytes> does not match`,
		`unknown task kind "invalidate:nope" in queue "invalidator-standard"`:          `unknown task kind "invalidate:nope" in queue "invalidator-standard"`,
		`delete 1 keys: unlink: cache refused`:                                         `delete 1 keys: unlink: cache refused`,
		`key "a\"b:c" gone`:                                                            `key <hidden, 6 bytes> gone`,
	} {
		require.Equal(t, want, dashboard.RedactError(in))
	}
}

// archive runs a task that fails with lastErr and no retry left, so asynq
// archives it with that reason, as a worker's failure would.
func archive(t *testing.T, b *testBundle, task tasks.Task, lastErr string) {
	t.Helper()
	payload, err := tasks.Marshal(task)
	require.NoError(t, err)
	info, err := asynq.NewClientFromRedisClient(b.db.Client).EnqueueContext(t.Context(), asynq.NewTask(task.Kind(), payload),
		asynq.Queue(testQueue), asynq.MaxRetry(0))
	require.NoError(t, err)
	srv := asynq.NewServerFromRedisClient(b.db.Client, asynq.Config{Queues: map[string]int{testQueue: 1}, Concurrency: 1,
		Logger: quietLogger{}, TaskCheckInterval: time.Millisecond})
	require.NoError(t, srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return errors.New(lastErr) })))
	defer srv.Shutdown()
	insp := asynq.NewInspectorFromRedisClient(b.db.Client)
	require.Eventually(t, func() bool {
		ti, err := insp.GetTaskInfo(testQueue, info.ID)
		return err == nil && ti.State == asynq.TaskStateArchived
	}, 10*time.Second, 2*time.Millisecond)
}

// quietLogger keeps asynq's server logs out of the test output.
type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(...any) {}
func (quietLogger) Fatal(...any) {}

func archivedErrors(t *testing.T, b *testBundle) []string {
	t.Helper()
	resp, body := b.do(t, http.MethodGet, "/monitoring/api/queues/"+testQueue+"/archived_tasks", testUser, testPassword)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var listing struct {
		Tasks []struct {
			Error string `json:"error_message"`
		} `json:"tasks"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &listing), body)
	var out []string
	for _, task := range listing.Tasks {
		out = append(out, task.Error)
	}
	return out
}

// "Last Error" names keys and parameter values: hidden like payloads,
// unless --show-payloads.
func TestLastErrorRedacted(t *testing.T) {
	t.Parallel()
	const reason = `bump version of family "user_feed" (key "feed:{4242}#ver"): connection refused`
	task := tasks.BumpVersion{Family: "user_feed", Params: map[string]string{"user_id": "4242"}}

	b := setup(t, withAuth(dashboard.Config{}))
	archive(t, b, task, reason)
	errs := archivedErrors(t, b)
	require.Len(t, errs, 1)
	require.NotContains(t, errs[0], "4242")
	require.Contains(t, errs[0], `family "user_feed"`)

	b = setup(t, withAuth(dashboard.Config{ShowPayloads: true}))
	archive(t, b, task, reason)
	require.Equal(t, []string{reason}, archivedErrors(t, b))
}
