// Package keyspec declares which cache keys exist and how they are
// invalidated: key families, key templates, safe rendering of keys and SCAN
// patterns, version keys, freshness classes with TTL jitter, and the policy
// file that holds them all.
//
// A family is a named key template such as "user:{id}:profile". Invalidations
// address a family plus parameter values, never a free-form pattern, so a
// pattern delete can only touch keys of one declared shape. Rendering is
// strict, because a wrong key is a silent lost invalidation: every parameter
// must be given, none may be empty, none may be unknown. Values are bytes and
// go into keys verbatim; in SCAN MATCH patterns they are escaped for the glob
// metacharacters * ? [ ] \, so a user id of "*" matches one literal key, not
// every user. A pattern that would match every key, or keys of unrelated
// prefixes ("user*" also matches "users:..."), is refused.
//
// A family may declare the values of its parameters (Param): a regular
// expression each value must match, such as "[0-9]+" for ids. Rendering
// refuses any other value (ErrInvalidParam); resolving an event skips only
// the invalidations of the families that refuse its values (Refusal), and a
// pattern delete removes only the keys the whole template matches
// (Family.Matcher): a glob '*' matches ':' too, so without the declaration
// "product:*" would also delete "product:7:price:EUR". An undeclared
// parameter matches any bytes, exactly as the glob does. The policy linter warns about families whose pattern
// deletes can match each other's keys.
//
// A family may name a hash-tag parameter: its value is wrapped in braces
// ("user:{42}:profile"), so all keys of one entity share a Redis Cluster slot.
// A family with strategy "version" is invalidated by advancing a version key
// instead of deleting data; its version and data keys always share a slot,
// because the Lua scripts that read them together require it.
//
// A freshness class groups families by how stale they may get: the TTL that
// bounds staleness if an invalidation is ever lost, the jitter that spreads
// expiry, and the queue, retries, timeout and backoff of their invalidation
// tasks. Producers and workers load the same policy file:
//
//	policy, err := keyspec.Load("policy.yaml")
//	if err != nil {
//		return err // ValidationErrors: every problem, with file:line:column
//	}
//	prices, err := policy.Family("product_price")
//	if err != nil {
//		return err // ErrUnknownFamily
//	}
//	key, err := prices.Key(map[string]string{"sku": "123", "currency": "EUR"})
//	// key == "product:123:price:EUR"
//	pattern, err := prices.Pattern(map[string]string{"sku": "123"})
//	// pattern == "product:123:price:*"
//	ttl := prices.JitteredTTL(rng) // for the cache write
//	queue := policy.ClassOf(prices).Queue
//
// See examples/policy.yaml in the repository for an annotated policy file.
// Policies and families are immutable once built and safe for concurrent use.
package keyspec
