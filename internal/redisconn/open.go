package redisconn

import (
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Open parses a Redis URL and returns a client for it, not yet connected
// (use Ping to check the server answers):
//
//	redis://[user:password@]host:port[/db][?options]                    standalone
//	rediss://...                                                        standalone over TLS
//	redis+cluster://[user:password@]host:port[,host:port...][?options]  Redis Cluster (rediss+cluster:// for TLS)
//	redis+sentinel://[user:password@]host:port[,host:port...]/master-name[?db=N]
//	                                                                    Sentinel (rediss+sentinel:// for TLS)
//
// Options are go-redis's URL options, such as dial_timeout=3s. A missing port
// is 6379 (26379 for sentinels). Errors wrap ErrInvalidURL and never contain
// the password.
func Open(rawURL string) (redis.UniversalClient, error) {
	cfg, err := parse(rawURL)
	if err != nil {
		return nil, err
	}
	return cfg.client(rawURL)
}

// config is what a URL asks for, before any client exists. Exactly one
// field is set.
type config struct {
	standalone *redis.Options
	cluster    *redis.ClusterOptions
	sentinel   *redis.FailoverOptions
}

// client builds the client. go-redis panics on some out-of-range options
// (pool_size beyond int32); that becomes an error here.
func (c *config) client(rawURL string) (client redis.UniversalClient, err error) {
	defer func() {
		if r := recover(); r != nil {
			client, err = nil, invalid(rawURL, formAny, "go-redis refused the options: %v", r)
		}
	}()
	switch {
	case c.cluster != nil:
		return redis.NewClusterClient(c.cluster), nil
	case c.sentinel != nil:
		return redis.NewFailoverClient(c.sentinel), nil
	default:
		return redis.NewClient(c.standalone), nil
	}
}

// topology is the kind of deployment a scheme names.
type topology int

const (
	standaloneTopology topology = iota
	clusterTopology
	sentinelTopology
)

// scheme is what a URL scheme means.
type scheme struct {
	topology    topology
	tls         bool
	form        string // the URL form, for errors
	defaultPort string
}

// lookupScheme returns the meaning of a lower-case scheme.
func lookupScheme(s string) (scheme, bool) {
	base, tlsOn := s, false
	if rest, ok := strings.CutPrefix(s, "rediss"); ok {
		base, tlsOn = "redis"+rest, true
	}
	switch base {
	case "redis":
		return scheme{standaloneTopology, tlsOn, formStandalone, "6379"}, true
	case "redis+cluster":
		return scheme{clusterTopology, tlsOn, formCluster, "6379"}, true
	case "redis+sentinel":
		return scheme{sentinelTopology, tlsOn, formSentinel, "26379"}, true
	default:
		return scheme{}, false
	}
}

// goRedisScheme is the scheme go-redis's own parsers expect.
func (s scheme) goRedisScheme() string {
	if s.tls {
		return "rediss"
	}
	return "redis"
}

// replicaReadOptions returns the go-redis options that send reads to
// replicas, which may lag behind the master: a read there can return a key an
// invalidation already deleted.
func replicaReadOptions() []string {
	return []string{"read_only", "route_by_latency", "route_randomly", "replica_only"}
}

// parsed is a URL checked part by part, ready for one topology's parser.
type parsed struct {
	raw        string
	scheme     scheme
	parts      urlParts
	hosts      []string // host:port, normalized, at least one
	user, pass string
	hasCreds   bool
	query      url.Values // without addr
}

// parse checks everything that can be checked without go-redis, so that the
// errors are ours (clear, and free of the password), then lets go-redis read
// the options.
func parse(rawURL string) (*config, error) {
	raw := strings.TrimSpace(rawURL)
	p, reason := splitURL(raw)
	if reason != "" {
		return nil, invalid(raw, formAny, "%s", reason)
	}
	sc, ok := lookupScheme(p.scheme)
	if !ok {
		return nil, invalid(raw, formAny, "unsupported scheme %q", p.scheme)
	}
	if strings.ContainsAny(p.userinfo, "/?#") {
		return nil, invalid(raw, sc.form, "there is an '@' after the host, or a '/', '?' or '#' in the user or password: "+
			"percent-encode them ('@' as %%40, '/' as %%2F, '?' as %%3F, '#' as %%23)")
	}
	if p.hasFragment {
		return nil, invalid(raw, sc.form, "unexpected '#' fragment (percent-encode '#' in a password as %%23)")
	}
	pp := parsed{raw: raw, scheme: sc, parts: p}
	if reason := pp.parseUserinfo(); reason != "" {
		return nil, invalid(raw, sc.form, "%s", reason)
	}
	q, err := url.ParseQuery(p.query)
	if err != nil {
		return nil, invalid(raw, sc.form, "the query string is malformed (percent-encode special characters as %%XX)")
	}
	hosts, reason := parseHosts(p.hosts, q["addr"], sc.defaultPort)
	if reason != "" {
		return nil, invalid(raw, sc.form, "%s", reason)
	}
	q.Del("addr")
	pp.hosts, pp.query = hosts, q
	for _, name := range replicaReadOptions() {
		if v := q.Get(name); v != "" && v != "false" && v != "0" {
			return nil, invalid(raw, sc.form, "option %q sends reads to replicas, which may still hold keys "+
				"already invalidated on the master: remove it", name)
		}
	}
	if v, ok := q["db"]; ok && !isDatabase(v[len(v)-1]) {
		return nil, invalid(raw, sc.form, "option \"db\" must be a non-negative number")
	}
	switch sc.topology {
	case clusterTopology:
		return pp.cluster()
	case sentinelTopology:
		return pp.sentinel()
	default:
		return pp.standalone()
	}
}

// parseUserinfo reads the credentials, or returns why it cannot.
func (p *parsed) parseUserinfo() string {
	if !p.parts.hasUser || p.parts.userinfo == "" {
		return ""
	}
	user, pass, ok := strings.Cut(p.parts.userinfo, ":")
	if !ok {
		return "credentials must be written user:password@ or :password@ " +
			"(redis-cli reads a bare name@ as a password, go-redis as a user name)"
	}
	var err1, err2 error
	p.user, err1 = url.PathUnescape(user)
	p.pass, err2 = url.PathUnescape(pass)
	if err1 != nil || err2 != nil {
		return "the user or password holds a malformed %-escape (write '%' itself as %25)"
	}
	p.hasCreds = p.user != "" || p.pass != ""
	return ""
}

// parseHosts reads the comma-separated host list and any ?addr= options.
func parseHosts(list string, extra []string, defaultPort string) ([]string, string) {
	if list == "" {
		return nil, "missing host:port"
	}
	var hosts []string
	for _, hp := range append(strings.Split(list, ","), extra...) {
		h, reason := hostPort(hp, defaultPort)
		if reason != "" {
			return nil, reason
		}
		hosts = append(hosts, h)
	}
	return hosts, ""
}

// hostPort validates one host[:port] and returns it as host:port.
func hostPort(s, defaultPort string) (string, string) {
	if s == "" {
		return "", "empty entry in the host list"
	}
	var host, port string
	if rest, ok := strings.CutPrefix(s, "["); ok {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", "missing ']' after an IPv6 address"
		}
		// A zone is percent-encoded in URLs: [fe80::1%25eth0].
		unescaped, err := url.PathUnescape(rest[:end])
		if err != nil {
			return "", "invalid IPv6 address in brackets"
		}
		host = unescaped
		switch after := rest[end+1:]; {
		case after == "":
			port = defaultPort
		case after[0] == ':':
			port = after[1:]
		default:
			return "", "unexpected text after an IPv6 address"
		}
		ip, _, _ := strings.Cut(host, "%") // drop a zone such as %eth0
		if net.ParseIP(ip) == nil || !strings.Contains(ip, ":") {
			return "", "invalid IPv6 address in brackets"
		}
	} else {
		var hasPort bool
		host, port, hasPort = strings.Cut(s, ":")
		if !hasPort {
			port = defaultPort
		} else if strings.Contains(port, ":") {
			return "", "an IPv6 address must be in brackets, e.g. [::1]:6379"
		}
		if host == "" {
			return "", "missing host before the port"
		}
		if !validHostname(host) {
			return "", fmt.Sprintf("invalid host %q", host)
		}
	}
	if !isPort(port) {
		return "", "port must be a number from 1 to 65535"
	}
	return net.JoinHostPort(host, port), ""
}

// validHostname reports whether s is a plausible DNS name or IPv4 address.
func validHostname(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
		default:
			return false
		}
	}
	return true
}

// isPort reports whether s is a TCP port number.
func isPort(s string) bool {
	n, ok := digits(s)
	return ok && n >= 1 && n <= 65535
}

// isDatabase reports whether s is a database number.
func isDatabase(s string) bool {
	_, ok := digits(s)
	return ok
}

// digits parses a non-empty string of ASCII digits (no sign, no spaces).
func digits(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// standalone builds the options of a single server.
func (p *parsed) standalone() (*config, error) {
	if len(p.hosts) != 1 {
		return nil, invalid(p.raw, p.scheme.form, "a %s:// URL names one server; "+
			"for several, use redis+cluster:// or redis+sentinel://", p.parts.scheme)
	}
	path := strings.TrimSuffix(p.parts.path, "/")
	if path != "" && !isDatabase(path[1:]) {
		return nil, invalid(p.raw, p.scheme.form, "the database (the path) must be a non-negative number, e.g. /0")
	}
	u := url.URL{Scheme: p.scheme.goRedisScheme(), Host: p.hosts[0], Path: path, RawQuery: p.query.Encode()}
	opts, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, p.optionsError(func(q url.Values) error {
			_, err := redis.ParseURL(p.probeURL(q))
			return err
		})
	}
	opts.Username, opts.Password = p.user, p.pass
	return &config{standalone: opts}, nil
}

// cluster builds the options of a Redis Cluster.
func (p *parsed) cluster() (*config, error) {
	if strings.TrimSuffix(p.parts.path, "/") != "" || p.query.Has("db") {
		return nil, invalid(p.raw, p.scheme.form, "Redis Cluster has only database 0: remove the database number")
	}
	u := url.URL{Scheme: p.scheme.goRedisScheme(), Host: p.hosts[0], RawQuery: withAddrs(p.query, p.hosts[1:]).Encode()}
	opts, err := redis.ParseClusterURL(u.String())
	if err != nil {
		return nil, p.optionsError(func(q url.Values) error {
			_, err := redis.ParseClusterURL(p.probeURL(q))
			return err
		})
	}
	opts.Username, opts.Password = p.user, p.pass
	if p.scheme.tls {
		// go-redis would verify every node's certificate against the first
		// host's name; left empty, crypto/tls checks each node's own address.
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return &config{cluster: opts}, nil
}

// sentinel builds the options of a Sentinel-managed master.
func (p *parsed) sentinel() (*config, error) {
	master, err := url.PathUnescape(strings.TrimPrefix(strings.TrimSuffix(p.parts.path, "/"), "/"))
	if err != nil || master == "" || strings.Contains(master, "/") {
		return nil, invalid(p.raw, p.scheme.form, "missing master name: give it as the path, e.g. /mymaster")
	}
	q := maps.Clone(p.query)
	if q.Has("master_name") {
		return nil, invalid(p.raw, p.scheme.form, "give the master name as the path only, not as ?master_name=")
	}
	if p.hasCreds && (q.Has("username") || q.Has("password")) {
		return nil, invalid(p.raw, p.scheme.form, "the master's credentials are given twice, before the host "+
			"and as ?username= or ?password=: keep one")
	}
	sentinelUser, sentinelPass := q.Get("sentinel_username"), q.Get("sentinel_password")
	q.Del("sentinel_username")
	q.Del("sentinel_password")

	q = withAddrs(q, p.hosts[1:])
	q.Set("master_name", master)
	u := url.URL{Scheme: p.scheme.goRedisScheme(), Host: p.hosts[0], RawQuery: q.Encode()}
	opts, err := redis.ParseFailoverURL(u.String())
	if err != nil {
		return nil, p.optionsError(func(q url.Values) error {
			_, err := redis.ParseFailoverURL(p.probeURL(q))
			return err
		})
	}
	if p.hasCreds {
		opts.Username, opts.Password = p.user, p.pass
	}
	opts.SentinelUsername, opts.SentinelPassword = sentinelUser, sentinelPass
	if opts.TLSConfig != nil {
		// The same TLS config dials the sentinels and the master they name:
		// let crypto/tls check each against its own address.
		opts.TLSConfig.ServerName = ""
	}
	return &config{sentinel: opts}, nil
}

// withAddrs returns a copy of q with an addr option per extra host, as
// go-redis's cluster and failover parsers take them.
func withAddrs(q url.Values, hosts []string) url.Values {
	q = maps.Clone(q)
	if len(hosts) > 0 {
		q["addr"] = slices.Clone(hosts)
	}
	return q
}

// probeURL is a URL carrying only the options q, for optionsError.
func (p *parsed) probeURL(q url.Values) string {
	return (&url.URL{Scheme: p.scheme.goRedisScheme(), Host: "localhost:6379", RawQuery: q.Encode()}).String()
}

// optionsError finds which option go-redis rejected by trying each alone
// (try parses a URL with just those options), and says whether its name is
// unknown or its value invalid. go-redis's own message is never used: it can
// quote values.
func (p *parsed) optionsError(try func(url.Values) error) error {
	for _, name := range slices.Sorted(maps.Keys(p.query)) {
		if try(url.Values{name: p.query[name]}) == nil {
			continue
		}
		shown := name
		if len(shown) > 40 {
			shown = shown[:40] + "..."
		}
		if try(url.Values{name: {""}}) == nil {
			return invalid(p.raw, p.scheme.form, "option %q has an invalid value", shown)
		}
		hint := ""
		if l := strings.ToLower(name); strings.Contains(l, "password") || strings.Contains(l, "user") {
			hint = " (credentials go before the host: user:password@host)"
		}
		return invalid(p.raw, p.scheme.form, "unknown option %q%s", shown, hint)
	}
	return invalid(p.raw, p.scheme.form, "go-redis rejects this combination of options")
}
