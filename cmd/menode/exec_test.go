package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the tests run this binary as menode: with MENODE_TEST_MAIN=1
// it is the command, not the tests (as the unit's ExecStart and the config
// tests start it).
func TestMain(m *testing.M) {
	if os.Getenv("MENODE_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// menodeCmd is this test binary as menode with args, env added to the
// test's; it dies with the test (Pdeathsig).
func menodeCmd(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(append(os.Environ(), "MENODE_TEST_MAIN=1", "MENODE_HTTP_ADDR="), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second // a child left holding stderr does not hang the test
	return cmd
}

// runMenode runs menode to the end: its stdout, stderr and exit status.
func runMenode(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := menodeCmd(t, env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}
