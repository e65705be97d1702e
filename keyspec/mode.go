package keyspec

// Mode is a family's rollout phase. A team adding invalidation to a running
// service starts one family in shadow, compares what would be deleted with
// its stale-read rate, then enforces; switching needs only a policy reload.
type Mode string

const (
	// ModeEnforce applies invalidations: keys are deleted and versions
	// bumped. It is the default; the empty Mode means the same.
	ModeEnforce Mode = "enforce"
	// ModeShadow applies nothing but counts and logs what would have been
	// deleted or bumped, to show a family's blast radius and rate first.
	ModeShadow Mode = "shadow"
	// ModeOff drops the family's invalidations (counted and logged at
	// debug level). Use it to pause a misbehaving family, knowing its cache
	// entries then live until their TTL.
	ModeOff Mode = "off"
)

// valid reports whether m is a known mode; "" counts as ModeEnforce.
func (m Mode) valid() bool { return m == "" || m == ModeEnforce || m == ModeShadow || m == ModeOff }

// Enforced reports whether invalidations of a family in this mode are
// applied.
func (m Mode) Enforced() bool { return m == "" || m == ModeEnforce }

func checkMode(m Mode) string {
	if !m.valid() {
		return "unknown mode \"" + string(m) + "\"; use enforce, shadow or off"
	}
	return ""
}
