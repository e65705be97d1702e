//go:build !unix

package redistest

import "os/exec"

// setProcAttr does nothing where there are no process groups; Main still
// stops every server when the tests end normally.
func setProcAttr(*exec.Cmd) {}
