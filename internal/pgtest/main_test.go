package pgtest_test

import (
	"os"
	"testing"

	"github.com/invalidator/invalidator/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
