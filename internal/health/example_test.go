package health_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/invalidator/invalidator/internal/health"
)

func ExampleNew() {
	h := health.New([]health.Check{
		{Name: "queue Redis", Probe: func(context.Context) error { return nil }},
		{Name: "cache Redis", Probe: func(context.Context) error { return context.DeadlineExceeded }},
	})
	mux := http.NewServeMux()
	mux.Handle(health.PathLive, h)
	mux.Handle(health.PathReady, h)

	for _, path := range []string{"/healthz", "/readyz"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		fmt.Printf("%s %d\n%s", path, rec.Code, rec.Body)
	}
	// Output:
	// /healthz 200
	// ok
	// /readyz 503
	// queue Redis: ok
	// cache Redis: failed (see the process log)
	// not ready
}
