//go:build linux

package benchproc

import (
	"os/exec"
	"syscall"
)

// killWithParent makes the kernel kill the child if this process dies.
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
