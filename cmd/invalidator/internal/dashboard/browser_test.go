package dashboard_test

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cmd/invalidator/internal/dashboard"
	"github.com/invalidator/invalidator/tasks"
)

// chromiumPackage is the Debian package the browser test needs.
const chromiumPackage = "chromium"

// lookChromium finds a Chromium or Chrome binary. Missing is a skip on a
// developer machine but a failure in CI, where .ci/run installs it.
func lookChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	msg := "no chromium on PATH: the real-browser dashboard test needs it (apt-get install -y " + chromiumPackage + ")"
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatal(msg + "; CI is set, so this is a failure, not a skip")
	}
	t.Skip(msg)
	return ""
}

// artifactDir is where tests leave files for a human: $INVALIDATOR_TEST_ARTIFACTS,
// else a temporary directory removed after the test.
func artifactDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("INVALIDATOR_TEST_ARTIFACTS"); dir != "" {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		return dir
	}
	return t.TempDir()
}

func TestBrowserShowsQueues(t *testing.T) {
	t.Parallel()
	chromium := lookChromium(t)
	b := setup(t, withAuth(dashboard.Config{}))
	queues := []string{testQueue, "invalidator-default"}
	for _, q := range queues {
		enqueueTo(t, b.db, q, tasks.DeleteKeys{Keys: []string{"user:1:profile"}})
	}

	// The whole browser lives under this deadline, so a hung page fails the
	// test instead of hanging it.
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // tests often run as root, where the sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1000),
		chromedp.UserDataDir(t.TempDir()),
		// Hermetic: asynqmon's page links Google Fonts; only our server resolves.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPassword))
	_, err := chromedp.Call(bctx, network.Enable, network.EnableParams{})
	require.NoError(t, err)
	_, err = chromedp.Call(bctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": auth},
	})
	require.NoError(t, err)

	resp, err := chromedp.RunResponse(bctx, chromedp.Navigate(b.srv.URL+"/"))
	require.NoError(t, err)
	require.EqualValues(t, 200, resp.Status, "after the redirect to /monitoring/")

	// The queue table, not just the chart, must list every queue.
	var waits []chromedp.Action[chromedp.Void]
	for _, q := range queues {
		waits = append(waits, chromedp.WaitVisible(`//table//tbody//*[self::td or self::th][normalize-space(.)="`+q+`"]`))
	}
	// A shorter deadline for the wait leaves time for the screenshot.
	waitCtx, cancelWait := context.WithTimeout(bctx, 30*time.Second)
	defer cancelWait()
	err = chromedp.Do(waitCtx, waits...)
	shot, shotErr := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if shotErr == nil {
		path := filepath.Join(artifactDir(t), "dashboard-queues.png")
		require.NoError(t, os.WriteFile(path, shot, 0o644))
		t.Logf("dashboard screenshot: %s", path)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queues %v not listed within the deadline (see the screenshot): %v", queues, err)
	}
	require.NoError(t, err)
	require.NoError(t, shotErr)
}
