package dashboard

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
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

// loopbackHostOnly serves only requests whose Host header names a loopback
// host (localhost, 127.0.0.0/8, ::1; any port), and refuses the others with
// 403. New installs it when there are no credentials: the loopback bind is
// then the only access control, and DNS rebinding defeats it, since a page
// on evil.example can make its name resolve to 127.0.0.1 and then read and
// post to the dashboard as its own origin (the same-origin check compares
// Origin with Host, which match). Browsers always send the name the page
// used, so such requests carry Host evil.example and stop here. Reads are
// checked as well as writes: queue listings are data too.
//
// addr is the configured listen address, used in the refusal's advice when
// the request does not say which address it arrived on.
func loopbackHostOnly(next http.Handler, addr string, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if loopbackHostHeader(r.Host) {
			next.ServeHTTP(w, r)
			return
		}
		log.Warn("refused request: Host is not loopback (DNS rebinding protection)",
			"method", r.Method, "path", r.URL.Path, "host", r.Host, "remote", r.RemoteAddr)
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, fmt.Sprintf("403 forbidden: Host %q is not a loopback name or address. "+
			"This dashboard runs without credentials, so it answers only to localhost, 127.0.0.1 or [::1] "+
			"(DNS rebinding protection: any other name could be a site that resolves to this machine). "+
			"Open %s instead, or set a user name and password to serve the dashboard under other names.",
			r.Host, localURL(r, addr)), http.StatusForbidden)
	})
}

// loopbackHostHeader reports whether a Host header (host, host:port,
// [ipv6] or [ipv6]:port) names a loopback host.
func loopbackHostHeader(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		// No port.
		host = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
	}
	return host != "" && isLoopbackHost(host)
}

// localURL is the dashboard URL to suggest to a refused request: the
// address the connection arrived on when it is loopback, else 127.0.0.1 at
// the configured port.
func localURL(r *http.Request, addr string) string {
	if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if host, _, err := net.SplitHostPort(local.String()); err == nil && isLoopbackHost(host) {
			return URL(local)
		}
	}
	port := "PORT"
	if _, p, err := net.SplitHostPort(addr); err == nil && p != "" && p != "0" {
		port = p
	}
	return "http://" + net.JoinHostPort("127.0.0.1", port) + RootPath + "/"
}

// guard enforces the write policy. GET and HEAD always pass. Anything else
// is refused outside the API, refused inside it when writes are off, and
// must not come from another site's page when they are on: basic auth
// credentials are sent by the browser automatically, so without the check
// any site the operator visits could post a delete.
//
// The cross-origin check is net/http's CrossOriginProtection: a browser
// says where a request comes from (Sec-Fetch-Site, else Origin, which every
// current browser sends with a POST), and a request that says neither is
// not from a browser, so not a forged one (curl with the credentials, say).
//
// asynqmon's own ReadOnly option is set too; this guard does not rely on it.
func guard(next http.Handler, allowWrites bool, log *slog.Logger) http.Handler {
	cop := http.NewCrossOriginProtection()
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
		if err := cop.Check(r); err != nil {
			log.Warn("refused write: cross-origin request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "reason", err)
			http.Error(w, "403 forbidden: a cross-origin write (CSRF protection); writes must come from the dashboard page itself", http.StatusForbidden)
			return
		}
		log.Info("write through the dashboard", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		next.ServeHTTP(w, r)
	})
}
