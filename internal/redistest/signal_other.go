//go:build !unix

package redistest

import (
	"errors"
	"os"
)

// No job-control signals here: Pause and Resume fail the test.
var sigStop, sigCont os.Signal

func signalProcess(*os.Process, os.Signal) error {
	return errors.New("pausing a process needs SIGSTOP, which this platform lacks")
}
