// Package dashboard serves the asynqmon web UI for invalidator's queues with
// safe defaults. asynqmon itself has no authentication, shows every payload
// and, unless read-only, lets anyone who reaches it delete or run tasks; this
// package wraps it so that:
//
//   - Access needs HTTP basic auth whenever the listen address is not
//     loopback: New (and Config.ValidateAccess) refuse to build an exposed
//     dashboard without credentials. Credentials are compared in constant
//     time, as SHA-256 digests so their length does not leak either.
//   - Without credentials (loopback only), a request is served only if its
//     Host header is a loopback name or address (localhost, 127.0.0.0/8,
//     [::1]; any port), for reads and writes alike. Otherwise a page on
//     another site could use DNS rebinding (its name resolving to
//     127.0.0.1) to read the queues and, since its Origin matches the Host it
//     sends, pass the CSRF check too. Other Hosts get 403 with a message
//     naming the URL to use instead. With credentials any Host is served:
//     the browser does not send them to the rebinding page's origin.
//   - It is read-only by default: asynqmon's ReadOnly mode plus our own
//     guard, which refuses every method but GET and HEAD. With AllowWrites,
//     writes under RootPath/api/ pass net/http's CrossOriginProtection
//     (Sec-Fetch-Site, else Origin, must say the dashboard's own origin), so
//     another site cannot make the operator's browser post a delete (CSRF).
//   - Payloads are redacted: the UI shows a task's kind, key count and first
//     key, its family and parameter names, or its event name and attribute
//     names, never the other keys or the parameter or attribute values, and
//     never raw bytes (see RedactPayload). ShowPayloads reveals whole decoded
//     tasks.
//   - Responses carry anti-framing, no-sniff and same-origin referrer
//     headers; API responses are never cached.
//
// The handler reads the queue Redis through the caller's
// redis.UniversalClient (standalone, Sentinel or Cluster) and never closes
// it. It needs no listener, so tests drive it with httptest; Serve runs it on
// a listener until a context ends:
//
//	h, err := dashboard.New(dashboard.Config{
//		Redis:    rdb, // the queue Redis
//		Addr:     "0.0.0.0:8080",
//		Username: "ops",
//		Password: password, // from a file or the environment, never a flag
//		Logger:   log,
//	})
//	if err != nil {
//		return err // errors.Is(err, dashboard.ErrAuthRequired) without credentials
//	}
//	ln, err := net.Listen("tcp", "0.0.0.0:8080")
//	...
//	fmt.Println("dashboard:", dashboard.URL(ln.Addr()))
//	return dashboard.Serve(ctx, ln, h, log)
//
// asynqmon is served at RootPath ("/monitoring"); "/" redirects there.
package dashboard
