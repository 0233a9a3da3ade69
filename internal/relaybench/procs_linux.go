//go:build linux

package relaybench

import (
	"os/exec"
	"syscall"
)

// killWithParent makes the kernel kill the server if the benchmark dies.
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
