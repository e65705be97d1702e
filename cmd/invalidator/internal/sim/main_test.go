package sim_test

import (
	"os"
	"testing"

	"github.com/invalidator/invalidator/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
