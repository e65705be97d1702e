package worker

import (
	"errors"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invalidator/invalidator/keyspec"
)

// poisonError marks a task that can never succeed (undecodable payload,
// failed validation, unknown family or kind). It matches asynq.SkipRetry, so
// asynq archives the task at once with this message as its reason.
type poisonError struct{ cause error }

func (e *poisonError) Error() string        { return "poison task: " + e.cause.Error() }
func (e *poisonError) Unwrap() error        { return e.cause }
func (e *poisonError) Is(target error) bool { return target == asynq.SkipRetry }

func poison(err error) error { return &poisonError{cause: err} }

// haltError marks a sound task that stopped on purpose and must wait for an
// operator (a family delete at max_keys): archived at once like a poison
// task, but its reason is its own words, not "poison task:", which means
// the payload cannot be applied at all.
type haltError struct{ cause error }

func (e *haltError) Error() string        { return e.cause.Error() }
func (e *haltError) Unwrap() error        { return e.cause }
func (e *haltError) Is(target error) bool { return target == asynq.SkipRetry }

func halt(err error) error { return &haltError{cause: err} }

// IsPoison reports whether err marks a task that is archived without retry.
func IsPoison(err error) bool { return errors.Is(err, asynq.SkipRetry) }

// retryError carries the delay the task's class asks for. The handler knows
// the task's queue and so its class; asynq's RetryDelayFunc does not.
type retryError struct {
	cause error
	delay time.Duration
}

func (e *retryError) Error() string { return e.cause.Error() }
func (e *retryError) Unwrap() error { return e.cause }

// backoff is capped exponential backoff with equal jitter: half the delay is
// fixed, so retries are never bunched at zero, and half is random, so a burst
// of failures does not come back as a burst.
func backoff(c *keyspec.Class, retried int, r keyspec.Rand) time.Duration {
	base, ceiling := c.BackoffBase, c.BackoffMax
	if base <= 0 {
		base = keyspec.DefaultBackoffBase
	}
	if ceiling < base {
		ceiling = base
	}
	d := base
	for i := 0; i < retried && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	half := d / 2
	return half + time.Duration(r.Float64()*float64(d-half))
}
