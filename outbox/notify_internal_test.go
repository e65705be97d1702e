package outbox

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// One write per interval carries the NOTIFY; 0 means every write; a failed
// notifying write hands the NOTIFY to the next one.
func TestNotifyGate(t *testing.T) {
	t.Parallel()
	every := &notifyGate{epoch: time.Now()}
	require.True(t, every.take())
	require.True(t, every.take())

	g := &notifyGate{interval: time.Hour, epoch: time.Now()}
	require.True(t, g.take(), "the first write notifies")
	require.False(t, g.take(), "a write within the interval does not")
	g.release()
	require.True(t, g.take(), "after a failed notifying write the next one notifies")
	require.False(t, g.take())
}
