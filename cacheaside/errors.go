package cacheaside

import "errors"

// Sentinel errors. Errors that match them wrap them with %w and name the key,
// so test with errors.Is.
var (
	// ErrNotFound is what a loader returns when the thing it loads does not
	// exist. Get passes it on (wrapped) and, with Config.NegativeTTL set,
	// caches the absence so repeated reads of a missing row do not all reach
	// the database. Loaders may wrap it.
	ErrNotFound = errors.New("not found")

	// ErrForeignValue means a key holds a string cacheaside did not write
	// (see the format in doc.go), e.g. one a plain SET left behind. The key
	// is not overwritten, because it may belong to other code: give
	// cacheaside keys of their own, or delete the old entry.
	ErrForeignValue = errors.New("key holds a value cacheaside did not write")

	// ErrWaitTimeout means a read found another reader loading the key and
	// gave up after Config.MaxWait, with that reader's lease still held. It
	// loaded nothing itself: a load that outlasts MaxWait means a slow
	// database, and one more load per waiting process is what such a
	// database can least afford. Retry later, serve a fallback, or raise
	// MaxWait.
	ErrWaitTimeout = errors.New("gave up waiting for another reader's load after MaxWait")

	// ErrLoadFailed means the load of the key failed: this read's own
	// (then the loader's error is wrapped too, for errors.Is and errors.As),
	// one it joined in its process (the same), or another reader's that
	// failed within Config.FailureTTL before (then only the kind of error is
	// told: the failure marker never carries the loader's error text). A
	// failing database so costs one load per FailureTTL, not one per
	// reader. Retry later or serve a fallback.
	ErrLoadFailed = errors.New("the load failed")

	// ErrCodec wraps the errors of a Typed cache's Codec: a value the loader
	// returned that does not encode (a failed load: no value is stored, see
	// ErrLoadFailed), or a cached value that does not decode (written for an
	// older T, say). A value that does not decode is not deleted: invalidate
	// the key, or move T to new keys.
	ErrCodec = errors.New("codec")
)
