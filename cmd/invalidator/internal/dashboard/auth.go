package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
)

// basicAuth lets through requests carrying the user name and password.
// It compares SHA-256 digests in constant time, so neither the content nor
// the length of the secrets leaks through timing, and checks both fields
// even when the first is wrong.
func basicAuth(next http.Handler, user, password string, log *slog.Logger) http.Handler {
	wantUser := sha256.Sum256([]byte(user))
	wantPassword := sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser := sha256.Sum256([]byte(u))
		gotPassword := sha256.Sum256([]byte(p))
		match := subtle.ConstantTimeCompare(gotUser[:], wantUser[:]) &
			subtle.ConstantTimeCompare(gotPassword[:], wantPassword[:])
		if !ok || match != 1 {
			// The user name is not logged: people type passwords into it.
			log.Info("refused request: missing or wrong credentials",
				"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "credentials_sent", ok)
			w.Header().Set("WWW-Authenticate", `Basic realm="invalidator dashboard", charset="UTF-8"`)
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "401 unauthorized: the invalidator dashboard needs a user name and password", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
