package keyspec

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// VersionRestartMargin is how far above the cache Redis's clock a version
// starts when its version key is missing: never created, expired or
// evicted. The worker's bump and cacheaside's versioned read both take it
// from here, so they restart alike.
//
// Versions are Redis TIME in microseconds: a bump sets max(current+1, TIME),
// and one script call takes Redis more than a microsecond, so a version
// does not run ahead of TIME however fast one key is bumped (in
// milliseconds, as before, a burst ran it hundreds of ms ahead). Data of
// version v lives at DataKey(params, v), so a restart that landed below a
// version already handed out would serve superseded data again. A restart
// at TIME+margin lands above every version handed out, as long as no
// version was more than the margin ahead of the clock when the key went
// missing: the margin absorbs the cache Redis's clock stepping back (an NTP
// step, a failover to a replica whose clock is behind). A restart itself is
// exactly the margin ahead, and falls back to the clock as time passes. The
// worker counts bumps that leave a version further ahead than the margin
// (invalidator_version_ahead_of_clock_total).
//
// A larger margin costs nothing but headroom in the version space:
// microsecond versions stay below 2^53, which Lua's numbers hold exactly,
// until the year 2255.
const VersionRestartMargin = 10 * time.Second

// Suffixes of a version family's keys. They differ after "#v", so a data key
// can never be mistaken for the version key.
const (
	versionKeySuffix = "#ver"
	dataKeyInfix     = "#v"
)

// VersionKey returns the key holding the current version of a version
// family's entity, or ErrNotVersioned for a delete family.
//
// A Lua script reads the version key and the data key together, and in Redis
// Cluster all keys of one script must live in one slot. So both keys start
// with the same prefix P that carries the hash tag: with a HashTag parameter,
// P is the rendered key, whose braces already hold the tag
// ("feed:{42}" gives "feed:{42}#ver"); otherwise P wraps the whole key in
// braces ("{catalog:shoes}#ver"). Redis hashes only the text between the
// first '{' and the first '}' after it, which lies inside P in both cases.
func (f *Family) VersionKey(params map[string]string) (string, error) {
	p, err := f.versionPrefix("version key", params)
	if err != nil {
		return "", err
	}
	return p + versionKeySuffix, nil
}

// DataKey returns the key holding the data of version v of a version
// family's entity: the VersionKey prefix plus "#v" and v in decimal. It
// returns ErrNotVersioned for a delete family and refuses a negative version.
func (f *Family) DataKey(params map[string]string, version int64) (string, error) {
	if version < 0 {
		return "", fmt.Errorf("data key family %q: version %d is negative; use the value read from the version key", f.Name, version)
	}
	p, err := f.versionPrefix("data key", params)
	if err != nil {
		return "", err
	}
	return p + dataKeyInfix + strconv.FormatInt(version, 10), nil
}

// DataKeyPrefix returns the data keys' common prefix: DataKey(params, v) is
// the prefix followed by v in decimal. Lua scripts that read the version and
// then the data key build the latter from it.
func (f *Family) DataKeyPrefix(params map[string]string) (string, error) {
	p, err := f.versionPrefix("data key", params)
	if err != nil {
		return "", err
	}
	return p + dataKeyInfix, nil
}

// VersionKeyTTL is the TTL a version key gets: twice the longest-lived data
// entry of the family (TTL plus jitter), so it never expires under live
// data; 0, no expiry, when the family keeps data forever. The worker's bump
// and cacheaside's versioned reads both set it.
func (f *Family) VersionKeyTTL() time.Duration {
	if f.TTL <= 0 {
		return 0
	}
	return 2 * time.Duration(float64(f.TTL)*(1+f.Jitter))
}

// versionPrefix returns P, the slot-carrying prefix of the version and data
// keys (see VersionKey).
func (f *Family) versionPrefix(op string, params map[string]string) (string, error) {
	if f.Strategy != StrategyVersion {
		return "", fmt.Errorf("%s family %q: %w: its strategy is %q; invalidate it by deleting keys, or declare strategy: version",
			op, f.Name, ErrNotVersioned, f.Strategy)
	}
	if err := f.checkParams(op, params, true); err != nil {
		return "", err
	}
	k := f.render(params)
	p := k
	if f.HashTag == "" {
		p = "{" + k + "}"
	}
	// checkParams already keeps the tag of a HashTag family inside P; this
	// also covers a key that starts with '}', which would make "{}" an empty
	// tag and Redis hash each whole key to a different slot.
	if _, end, ok := hashTagSpan(p); !ok || end >= len(p) {
		return "", fmt.Errorf("%s family %q: %w: key %q gives no hash tag that the version and data keys share",
			op, f.Name, ErrUnsafeHashTag, k)
	}
	return p, nil
}

// hashTagSpan finds the Redis Cluster hash tag of key: the bytes between the
// first '{' and the first '}' after it. It returns the index of the first tag
// byte and of the closing '}', and ok=false when the key has no such pair or
// the tag is empty (Redis then hashes the whole key).
func hashTagSpan(key string) (start, end int, ok bool) {
	open := -1
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			open = i
			break
		}
	}
	if open < 0 {
		return 0, 0, false
	}
	for i := open + 1; i < len(key); i++ {
		if key[i] == '}' {
			if i == open+1 {
				return 0, 0, false
			}
			return open + 1, i, true
		}
	}
	return 0, 0, false
}

// VersionKeyPattern returns a SCAN MATCH pattern for the version keys of a
// version family, one per cached entity: the template's pattern (see
// Pattern, with every parameter a wildcard) in VersionKey's shape. An audit
// samples a version family through it, since a data key is reachable only
// through its entity's version key. It returns ErrNotVersioned for a delete
// family, and refuses what Pattern refuses. Filter what SCAN returns with
// ParseVersionKey: '*' matches any bytes.
func (f *Family) VersionKeyPattern() (string, error) {
	if f.Strategy != StrategyVersion {
		return "", fmt.Errorf("version key pattern family %q: %w: its strategy is %q", f.Name, ErrNotVersioned, f.Strategy)
	}
	p, err := f.pattern(nil)
	if err != nil {
		return "", err
	}
	if f.HashTag == "" {
		p = "{" + p + "}"
	}
	return p + versionKeySuffix, nil
}

// ParseVersionKey returns the parameter values that VersionKey renders key
// from: its inverse, as ParseKey is Key's. It fails with ErrKeyShape when
// key is not a version key of the family (a data key, another family's
// key, or one that parses in more than one way), and with ErrNotVersioned
// for a delete family.
func (f *Family) ParseVersionKey(key string) (map[string]string, error) {
	if f.Strategy != StrategyVersion {
		return nil, fmt.Errorf("parse version key family %q: %w: its strategy is %q", f.Name, ErrNotVersioned, f.Strategy)
	}
	k, ok := strings.CutSuffix(key, versionKeySuffix)
	if ok && f.HashTag == "" {
		if len(k) < 2 || k[0] != '{' || k[len(k)-1] != '}' {
			ok = false
		} else {
			k = k[1 : len(k)-1]
		}
	}
	if !ok {
		return nil, fmt.Errorf("parse version key family %q: %w: %s is not a version key", f.Name, ErrKeyShape, quoteValue(key))
	}
	params, err := f.parseKey(k)
	if err != nil {
		return nil, err
	}
	// The one parse must render this very key back (hash-tag rules).
	if back, err := f.VersionKey(params); err != nil || back != key {
		return nil, fmt.Errorf("parse version key family %q: %w: %s does not render back from its parameters", f.Name, ErrKeyShape, quoteValue(key))
	}
	return params, nil
}
