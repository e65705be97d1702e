package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// eventHeader names, on a family delete derived from an event, the event
// that caused it, so its metrics and logs carry the event.
const eventHeader = "invalidator-event"

// Actions, the "action" label of invalidator_event_actions_total.
const (
	actionDelete  = "delete"  // keys deleted
	actionPattern = "pattern" // a family delete ran
	actionBump    = "bump"    // a version was advanced
	actionShadow  = "shadow"  // shadow mode: counted, nothing changed
	actionOff     = "off"     // mode off: dropped
)

// applyEvent resolves an event against the worker's policy and applies what
// it triggers: its key deletes go through the batcher like a DeleteKeys
// task's, its version bumps run here, and each pattern delete is queued as
// a DeleteFamily task of its own on the family's class queue, so a slow
// scan never holds up the quick deletes of this or any other event.
//
// The event succeeds only when its keys are gone, its versions advanced and
// its scans durably queued. Any failure retries the whole event, which is
// safe: every action is idempotent (a repeated bump only orphans once more).
func (w *Worker) applyEvent(ctx context.Context, st *policyState, t tasks.Event, at *asynq.Task, log *slog.Logger) error {
	actions, err := st.policy.Resolve(t.Name, t.Attrs)
	if err != nil {
		if errors.Is(err, keyspec.ErrUnknownEvent) {
			return poison(fmt.Errorf("%w (roll policy changes out to workers before producers, then retry it from the dead letter)", err))
		}
		return poison(err)
	}
	cache, err := w.target(t.Target)
	if err != nil {
		return err
	}
	log = log.With("event", t.Name)

	// Enforced key deletes, with the class of each key's family for the
	// second delete. Shadow families are looked at last, best effort: they
	// must never hold up or fail what is enforced.
	var keys []string
	var keyClasses []*keyspec.Class
	var shadow []keyspec.Action
	for _, a := range actions {
		if a.Kind != keyspec.ActionDelete {
			continue
		}
		switch a.Family.Mode {
		case keyspec.ModeOff:
			w.metrics.eventAction(t.Name, a.Family.Name, actionOff)
			log.Debug("family is off: key not deleted", "family", a.Family.Name, "key", a.Key)
		case keyspec.ModeShadow:
			shadow = append(shadow, a)
		default:
			keys = append(keys, a.Key)
			keyClasses = append(keyClasses, st.policy.ClassOf(a.Family))
		}
	}
	if len(keys) > 0 {
		if err := w.batchers[t.Target].unlink(ctx, keys); err != nil {
			return fmt.Errorf("event %q: delete %d keys: %w", t.Name, len(keys), err)
		}
		for _, a := range actions {
			if a.Kind == keyspec.ActionDelete && a.Family.Mode.Enforced() {
				w.metrics.eventAction(t.Name, a.Family.Name, actionDelete)
			}
		}
	}
	for _, a := range actions {
		if a.Kind == keyspec.ActionBump {
			if err := w.bump(ctx, cache, a.Family, a.Key, t.Name, log); err != nil {
				return fmt.Errorf("event %q: %w", t.Name, err)
			}
		}
	}
	for _, a := range actions {
		if a.Kind != keyspec.ActionPattern || a.Family.Mode == keyspec.ModeOff {
			if a.Kind == keyspec.ActionPattern {
				w.metrics.eventAction(t.Name, a.Family.Name, actionOff)
			}
			continue
		}
		// Shadow families are queued too: the family delete counts what
		// it would delete without deleting.
		id, err := w.queueFamilyDelete(ctx, st, a, t, log)
		if err != nil {
			return fmt.Errorf("event %q: queue the pattern delete of family %q: %w", t.Name, a.Family.Name, err)
		}
		// The family delete counts its action when it has run.
		log.Debug("event queued a family delete", "family", a.Family.Name, "pattern", a.Pattern, "task_id", id)
	}

	// Second deletes, per class: their delays and queues differ.
	var classes []*keyspec.Class
	for _, c := range keyClasses {
		if !slices.Contains(classes, c) {
			classes = append(classes, c)
		}
	}
	for _, class := range classes {
		var ck []string
		for i, k := range keys {
			if keyClasses[i] == class {
				ck = append(ck, k)
			}
		}
		if err := w.scheduleSecondDelete(ctx, class, ck, t.Target, log); err != nil {
			return fmt.Errorf("event %q: %w", t.Name, err)
		}
	}
	for _, a := range shadow {
		w.shadowKey(ctx, cache, t.Name, a, log)
	}
	log.Debug("event applied", "actions", len(actions), "keys_deleted", len(keys))
	return nil
}

// shadowKey counts and logs a key a shadow-mode family would lose. A
// failure is logged, never returned: shadow mode has no effect on the
// invalidations that are enforced.
func (w *Worker) shadowKey(ctx context.Context, cache redis.UniversalClient, event string, a keyspec.Action, log *slog.Logger) {
	n, err := cache.Exists(ctx, a.Key).Result()
	if err != nil {
		log.Warn("shadow mode: could not check key", "family", a.Family.Name, "key", a.Key, "err", err)
		return
	}
	w.metrics.eventAction(event, a.Family.Name, actionShadow)
	w.metrics.wouldDelete(event, a.Family.Name, int(n))
	log.Info("shadow mode: would delete key", "family", a.Family.Name, "key", a.Key, "exists", n == 1)
}

// queueFamilyDelete enqueues the DeleteFamily task of an event's pattern
// action on the family's class queue, with the class's retry budget.
func (w *Worker) queueFamilyDelete(ctx context.Context, st *policyState, a keyspec.Action, t tasks.Event, _ *slog.Logger) (string, error) {
	class := st.policy.ClassOf(a.Family)
	payload, err := tasks.Marshal(tasks.DeleteFamily{Family: a.Family.Name, Params: a.Params, Target: t.Target, EnqueuedAt: t.EnqueuedAt})
	if err != nil {
		return "", err
	}
	opts := []asynq.Option{asynq.Queue(class.Queue), asynq.MaxRetry(class.MaxRetry)}
	if class.Timeout > 0 {
		opts = append(opts, asynq.Timeout(class.Timeout))
	}
	task := asynq.NewTaskWithHeaders(tasks.KindDeleteFamily, payload, map[string]string{eventHeader: t.Name})
	info, err := w.aq.EnqueueContext(ctx, task, opts...)
	if err != nil {
		return "", err
	}
	return info.ID, nil
}
