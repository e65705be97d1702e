package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// Actions, the "action" label of invalidator_event_actions_total.
const (
	actionDelete  = "delete"  // keys deleted
	actionPattern = "pattern" // a family delete ran
	actionBump    = "bump"    // a version was advanced
	actionShadow  = "shadow"  // shadow mode: counted, nothing changed
	actionOff     = "off"     // mode off: dropped
	// actionRefused: the event's values cannot render a key of the family
	// (outside a declaration, or moving its hash tag), so nothing of it is
	// cached under them: skipped, the event's other actions apply.
	actionRefused = "refused"
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
// An invalidation whose family refuses the event's values is skipped, and
// logged and counted once the event has applied (keyspec.Refusal says why
// that loses nothing); an unknown event or a missing, unknown or empty
// attribute is poison (a producer bug).
func (w *Worker) applyEvent(ctx context.Context, st *policyState, t tasks.Event, at *asynq.Task, log *slog.Logger) error {
	actions, refused, err := st.policy.Resolve(t.Name, t.Attrs)
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

	// Sort the actions once. Shadow key checks run last, best effort: they
	// must never hold up or fail what is enforced. Bumps and pattern
	// deletes apply shadow mode themselves.
	var deletes, bumps, patterns, shadow []keyspec.Action
	for _, a := range actions {
		switch {
		case a.Family.Mode == keyspec.ModeOff:
			w.metrics.eventAction(t.Name, a.Family.Name, actionOff)
			log.Debug("family is off: nothing done", "family", a.Family.Name, "action", a.Kind)
		case a.Kind == keyspec.ActionDelete && a.Family.Mode == keyspec.ModeShadow:
			shadow = append(shadow, a)
		case a.Kind == keyspec.ActionDelete:
			deletes = append(deletes, a)
		case a.Kind == keyspec.ActionBump:
			bumps = append(bumps, a)
		default:
			patterns = append(patterns, a)
		}
	}

	// Key deletes, and their second deletes per class (delays and queues
	// differ between classes).
	keys := make([]string, 0, len(deletes))
	var classes []*keyspec.Class
	byClass := map[*keyspec.Class][]string{}
	for _, a := range deletes {
		keys = append(keys, a.Key)
		c := st.policy.ClassOf(a.Family)
		if _, seen := byClass[c]; !seen {
			classes = append(classes, c)
		}
		byClass[c] = append(byClass[c], a.Key)
	}
	if len(keys) > 0 {
		if err := cache.batch.unlink(ctx, keys); err != nil {
			return fmt.Errorf("event %q: delete %d keys: %w", t.Name, len(keys), err)
		}
		for _, a := range deletes {
			w.metrics.eventAction(t.Name, a.Family.Name, actionDelete)
		}
	}
	for _, a := range bumps {
		if err := w.bump(ctx, cache.client, a.Family, a.Key, t.Name, log); err != nil {
			return fmt.Errorf("event %q: %w", t.Name, err)
		}
	}
	for _, a := range patterns {
		// The family delete counts its action when it has run.
		id, err := w.queueFamilyDelete(ctx, st, a, t)
		if err != nil {
			return fmt.Errorf("event %q: queue the pattern delete of family %q: %w", t.Name, a.Family.Name, err)
		}
		log.Debug("event queued a family delete", "family", a.Family.Name, "pattern", a.Pattern, "task_id", id)
	}
	for _, c := range classes {
		if err := w.scheduleSecondDelete(ctx, st.policy, c, byClass[c], t.Target, log); err != nil {
			return fmt.Errorf("event %q: %w", t.Name, err)
		}
	}
	for _, a := range shadow {
		w.shadowKey(ctx, cache.client, t.Name, a, log)
	}
	for _, r := range refused {
		w.metrics.eventAction(t.Name, r.Family.Name, actionRefused)
		log.Warn("event: skipped an invalidation whose family refuses the event's values: no key of the family can be cached under them",
			"family", r.Family.Name, "action", r.Kind, "reason", r.Err)
	}
	log.Debug("event applied", "actions", len(actions), "refused", len(refused), "keys_deleted", len(keys))
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
func (w *Worker) queueFamilyDelete(ctx context.Context, st *policyState, a keyspec.Action, t tasks.Event) (string, error) {
	class := st.policy.ClassOf(a.Family)
	df := tasks.DeleteFamily{Family: a.Family.Name, Params: a.Params, Target: t.Target, EnqueuedAt: t.EnqueuedAt}
	e, err := tasks.NewEnvelope(st.policy, class, df, tasks.Overrides{}, map[string]string{tasks.HeaderEvent: t.Name})
	if err != nil {
		return "", err
	}
	info, err := w.enqueue(ctx, e)
	if err != nil {
		return "", err
	}
	return info.ID, nil
}
