package dashboard

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

const apiPrefix = RootPath + "/api/"

// securityHeaders keeps the dashboard out of frames (clickjacking a retry
// button), stops MIME sniffing and keeps URLs out of Referer headers sent to
// other sites.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// guard enforces the write policy. GET and HEAD always pass. Anything else
// is refused outside the API, refused inside it when writes are off, and
// must come from a same-origin page when they are on: basic auth
// credentials are sent by the browser automatically, so without the check
// any site the operator visits could post a delete.
//
// asynqmon's own ReadOnly option is set too; this guard does not rely on it.
func guard(next http.Handler, allowWrites bool, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api := strings.HasPrefix(r.URL.Path, apiPrefix)
		if api {
			// Task listings carry queue contents: never keep them in a cache.
			w.Header().Set("Cache-Control", "no-store")
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		switch {
		case !api:
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "405 method not allowed: only GET and HEAD are served outside "+apiPrefix, http.StatusMethodNotAllowed)
			return
		case !allowWrites:
			log.Info("refused write: dashboard is read-only", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "405 method not allowed: the dashboard is read-only; restart it with --allow-writes to retry, run or delete tasks from the UI",
				http.StatusMethodNotAllowed)
			return
		}
		if err := sameOrigin(r); err != nil {
			log.Warn("refused write: cross-origin request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "reason", err)
			http.Error(w, "403 forbidden: "+err.Error(), http.StatusForbidden)
			return
		}
		log.Info("write through the dashboard", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		next.ServeHTTP(w, r)
	})
}

// sameOrigin reports whether r was sent by a page of this dashboard: its
// Origin header, or its Referer when a browser sent no Origin, must name the
// host the request was sent to. A request with neither is refused: browsers
// always send one of them with a write from our UI.
func sameOrigin(r *http.Request) error {
	from := r.Header.Get("Origin")
	header := "Origin"
	if from == "" {
		from, header = r.Header.Get("Referer"), "Referer"
	}
	if from == "" {
		return errors.New("write requests need an Origin or Referer header naming this dashboard (CSRF protection)")
	}
	u, err := url.Parse(from)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return errors.New(header + " header is not an http(s) origin (CSRF protection)")
	}
	if !strings.EqualFold(u.Host, r.Host) {
		return errors.New(header + " does not match the dashboard's host (CSRF protection); writes must come from the dashboard page itself")
	}
	return nil
}
