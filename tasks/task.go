package tasks

// The task kinds. They are the asynq task type names, fixed strings that never
// change with a Go rename: queued tasks outlive builds.
const (
	// KindDeleteKeys names a DeleteKeys task.
	KindDeleteKeys = "invalidate:keys"
	// KindDeleteFamily names a DeleteFamily task.
	KindDeleteFamily = "invalidate:family"
	// KindBumpVersion names a BumpVersion task.
	KindBumpVersion = "invalidate:version"
	// KindEvent names an Event task.
	KindEvent = "invalidate:event"
)

// Task headers (asynq task headers, see Envelope.Headers). Like the kinds
// they are fixed strings: queued and dead-lettered tasks carry them across
// builds. Only the worker's own follow-up tasks set them; a producer's
// tasks carry none.
const (
	// HeaderEvent names, on a family delete that an event's policy rule
	// caused, the event, so the delete's metrics and logs carry it.
	HeaderEvent = "invalidator-event"
	// HeaderScan names, on a continuation of a paused family delete, the
	// scan it continues: the ID of the scan's first task, which names the
	// checkpoint they share (see ScanID).
	HeaderScan = "invalidator-scan"
	// HeaderSecond marks a delayed second delete of keys, which must not
	// schedule a third. Its value is "1".
	HeaderSecond = "invalidator-second"
)

// FormatVersion is the payload format this build writes. Decoders accept every
// version <= FormatVersion; see the package documentation for the upgrade
// order.
const FormatVersion = 1

// Limits, enforced by Validate, Marshal and Unmarshal alike.
const (
	// MaxKeysPerTask bounds the keys of one DeleteKeys task. It matches the
	// size at which one UNLINK stops getting cheaper per key; SplitKeys
	// chunks longer lists.
	MaxKeysPerTask = 1000
	// MaxKeyBytes bounds one key (and one family name or parameter value). A
	// longer key is refused with an error, never truncated: deleting a
	// truncated key would delete the wrong key.
	MaxKeyBytes = 16 << 10
	// MaxPayloadBytes bounds a whole encoded payload.
	MaxPayloadBytes = 1 << 20
	// MaxTargetBytes bounds a target name. SplitKeys reserves room for the
	// longest target, so its chunks marshal whatever target is set.
	MaxTargetBytes = 128
)

// Task is implemented by every task type. Kind is a fixed string, never
// derived from the Go type name.
type Task interface {
	// Kind returns the task's kind, one of Kinds().
	Kind() string
	// Validate reports whether the task can be marshalled and run. Errors
	// wrap ErrInvalid and name the offending field.
	Validate() error
}

// Kinds returns the task kinds this package knows, in a fixed order.
func Kinds() []string {
	return []string{KindDeleteKeys, KindDeleteFamily, KindBumpVersion, KindEvent}
}

// IsKind reports whether kind is one of Kinds().
func IsKind(kind string) bool {
	switch kind {
	case KindDeleteKeys, KindDeleteFamily, KindBumpVersion, KindEvent:
		return true
	}
	return false
}
