package worker

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCheckpointScriptsTakeFieldNames keeps the checkpoint's field names
// spelled once, in checkpoint.go: its scripts get them as arguments, so a
// renamed field cannot leave a script writing the old name.
func TestCheckpointScriptsTakeFieldNames(t *testing.T) {
	literal := regexp.MustCompile(`'_[a-z]+'|"_[a-z]+"`)
	for name, src := range map[string]string{"begin": beginLua, "save": saveLua} {
		require.Empty(t, literal.FindAllString(src, -1), "the %s script spells a checkpoint field; pass it in ARGV", name)
	}
}
