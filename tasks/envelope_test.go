package tasks_test

import (
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/tasks"
)

// optionValues maps each option of opts to its value, refusing an option
// type given twice (asynq would take the last, hiding the first).
func optionValues(t *testing.T, opts []asynq.Option) map[asynq.OptionType]any {
	t.Helper()
	got := map[asynq.OptionType]any{}
	for _, o := range opts {
		_, dup := got[o.Type()]
		require.False(t, dup, "option %s given twice", o)
		got[o.Type()] = o.Value()
	}
	return got
}

func TestEnvelopeAsynqCarriesEveryField(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 1, 2, 3, 0, time.UTC)
	e := tasks.Envelope{
		Kind: tasks.KindDeleteFamily, Payload: []byte("p\x00\xff"), Queue: "q", MaxRetry: 7, Timeout: 9 * time.Second,
		Headers: map[string]string{tasks.HeaderScan: "first", tasks.HeaderEvent: "user.updated"}, ProcessAt: at, ID: "id-1",
	}
	task, opts := e.Asynq()
	require.Equal(t, tasks.KindDeleteFamily, task.Type())
	require.Equal(t, []byte("p\x00\xff"), task.Payload())
	require.Equal(t, e.Headers, task.Headers())
	require.Equal(t, map[asynq.OptionType]any{
		asynq.QueueOpt: "q", asynq.MaxRetryOpt: 7, asynq.TimeoutOpt: 9 * time.Second,
		asynq.ProcessAtOpt: at, asynq.TaskIDOpt: "id-1",
	}, optionValues(t, opts))

	// The task keeps its own headers: the caller may reuse its map.
	e.Headers[tasks.HeaderScan] = "changed"
	require.Equal(t, "first", task.Headers()[tasks.HeaderScan])
}

// Unset fields add no option: asynq's defaults apply (its timeout, a
// fresh ID, at once), and MaxRetry 0 is kept, since it means "archive at
// the first failure", not "asynq's default of 25".
func TestEnvelopeAsynqLeavesUnsetFieldsToAsynq(t *testing.T) {
	t.Parallel()
	task, opts := tasks.Envelope{Kind: tasks.KindDeleteKeys, Payload: []byte("p"), Queue: "q"}.Asynq()
	require.Nil(t, task.Headers())
	require.Equal(t, map[asynq.OptionType]any{asynq.QueueOpt: "q", asynq.MaxRetryOpt: 0}, optionValues(t, opts))
}

func envelopePolicy(t *testing.T) *keyspec.Policy {
	t.Helper()
	p, err := keyspec.Parse("policy.yaml", []byte(`version: 1
default_class: standard
classes:
  critical: {shards: 3, max_retry: 20, timeout: 5s}
  standard: {max_retry: 4, timeout: 10s}
families:
  user: {template: "user:{id}", class: critical}
`))
	require.NoError(t, err)
	return p
}

func TestNewEnvelopeTakesTheClassDefaults(t *testing.T) {
	t.Parallel()
	p := envelopePolicy(t)
	dk := tasks.DeleteKeys{Keys: []string{"user:{42}:a"}}
	e, err := tasks.NewEnvelope(p, p.Classes["standard"], dk, tasks.Overrides{}, map[string]string{tasks.HeaderSecond: "1"})
	require.NoError(t, err)
	payload, err := tasks.Marshal(dk)
	require.NoError(t, err)
	require.Equal(t, tasks.Envelope{
		Kind: tasks.KindDeleteKeys, Payload: payload, Queue: "invalidator-standard", MaxRetry: 4, Timeout: 10 * time.Second,
		Headers: map[string]string{tasks.HeaderSecond: "1"},
	}, e)

	// A sharded class's task goes to the shard its shard key picks.
	crit := p.Classes["critical"]
	e, err = tasks.NewEnvelope(p, crit, dk, tasks.Overrides{}, nil)
	require.NoError(t, err)
	require.Equal(t, crit.QueueFor("user:{42}:a"), e.Queue)
	require.NotEqual(t, crit.Queue, e.Queue)
	require.Equal(t, 20, e.MaxRetry)
	require.Equal(t, 5*time.Second, e.Timeout)
}

func TestNewEnvelopeAppliesOverrides(t *testing.T) {
	t.Parallel()
	p := envelopePolicy(t)
	crit, std := p.Classes["critical"], p.Classes["standard"]
	dk := tasks.DeleteKeys{Keys: []string{"user:{42}:a"}}
	zero := 0
	e, err := tasks.NewEnvelope(p, std, dk, tasks.Overrides{Queue: crit.Queue, MaxRetry: &zero, Timeout: time.Minute}, nil)
	require.NoError(t, err)
	// The critical class's queue resolves to its shard, as its own tasks do.
	require.Equal(t, crit.QueueFor("user:{42}:a"), e.Queue)
	require.Equal(t, 0, e.MaxRetry)
	require.Equal(t, time.Minute, e.Timeout)

	// A shard named outright is kept.
	shard := crit.Queues()[0]
	e, err = tasks.NewEnvelope(p, std, dk, tasks.Overrides{Queue: shard}, nil)
	require.NoError(t, err)
	require.Equal(t, shard, e.Queue)
	require.Equal(t, 4, e.MaxRetry)
}

func TestNewEnvelopeRefusesAnInvalidTask(t *testing.T) {
	t.Parallel()
	p := envelopePolicy(t)
	_, err := tasks.NewEnvelope(p, p.Classes["standard"], tasks.DeleteKeys{}, tasks.Overrides{}, nil)
	require.ErrorIs(t, err, tasks.ErrInvalid)
}

func TestScanID(t *testing.T) {
	t.Parallel()
	require.Equal(t, "own", tasks.ScanID("own", nil))
	require.Equal(t, "own", tasks.ScanID("own", map[string]string{tasks.HeaderEvent: "e"}))
	require.Equal(t, "first", tasks.ScanID("own", map[string]string{tasks.HeaderScan: "first"}))
}
