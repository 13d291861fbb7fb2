package main

import (
	"os"
	"syscall"
)

// dieWithParent, with MENODE_DIE_WITH_PARENT=1 in the environment, has the
// kernel kill this process when the one that started it dies (prctl
// PR_SET_PDEATHSIG), so that a node a test started does not outlive a
// test binary killed with SIGKILL. The scenario harness sets it.
func dieWithParent() {
	if os.Getenv("MENODE_DIE_WITH_PARENT") != "1" {
		return
	}
	parent := os.Getppid()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); errno != 0 {
		return
	}
	if os.Getppid() != parent {
		os.Exit(1) // the parent died before the request took
	}
}
