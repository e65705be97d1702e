package tasks

import "errors"

// Errors returned by this package, always wrapped with the kind and the field
// that failed. Test with errors.Is.
//
// ErrUnknownKind, ErrMalformed and ErrInvalid mark a poison task: no build of
// the worker can run it, so it belongs in the dead letter at once. ErrNewerFormat
// does not: a newer worker in the fleet can run the task.
var (
	// ErrUnknownKind means the kind is not one of Kinds().
	ErrUnknownKind = errors.New("unknown task kind")
	// ErrMalformed means the payload cannot be decoded: bad magic, truncated,
	// a length running past the end, trailing bytes, unsorted parameters.
	ErrMalformed = errors.New("malformed payload")
	// ErrNewerFormat means the payload was written by a newer build, with a
	// format version above FormatVersion.
	ErrNewerFormat = errors.New("payload written by a newer format version: upgrade the worker")
	// ErrInvalid means the task breaks a rule of Validate or a limit: no keys,
	// too many keys, an empty or oversized key, an empty family, a bad
	// parameter or target name.
	ErrInvalid = errors.New("invalid task")
)
