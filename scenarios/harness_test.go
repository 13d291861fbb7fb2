package scenarios

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// harnessScript starts a node the way the scripts do, says so, and waits
// for it forever: the parent test kills the harness meanwhile.
const harnessScript = `exec menode --root $NODE_ROOT run --addr 127.0.0.1:0 &node&
poll 20s '"running": true' menode --root $NODE_ROOT status --json
exec touch $READY_FILE
wait node
`

// TestHarness_killed kills a test binary with SIGKILL while a script of
// it runs a node, and checks that the node dies with it.
func TestHarness_killed(t *testing.T) {
	if os.Getenv("MENODE_HARNESS_CHILD") != "" {
		return // this process is the harness being killed (TestHarness_child)
	}
	dir := t.TempDir()
	scripts := filepath.Join(dir, "scripts")
	if err := os.Mkdir(scripts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(scripts, "node.txtar"), []byte(harnessScript), 0o644); err != nil {
		t.Fatal(err)
	}
	root, ready := filepath.Join(dir, "node-root"), filepath.Join(dir, "ready")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	harness := exec.Command(self, "-test.run=^TestHarness_child$", "-test.count=1", "-test.timeout=5m")
	harness.Env = append(os.Environ(), "MENODE_HARNESS_CHILD="+scripts, "MENODE_SCENARIO_BIN="+binDir,
		"NODE_ROOT="+root, "READY_FILE="+ready, "TMPDIR="+dir)
	harness.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out := &strings.Builder{}
	harness.Stdout, harness.Stderr = out, out
	if err := harness.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = harness.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = harness.Process.Kill()
		<-done
		for _, pid := range nodesOn(root) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	poll(t, 60*time.Second, "the harness's node answers", func() (bool, string) {
		select {
		case <-done:
			t.Fatalf("the harness ended by itself:\n%s", out)
		default:
		}
		_, err := os.Stat(ready)
		return err == nil, "no ready file yet"
	})
	if pids := nodesOn(root); len(pids) != 1 {
		t.Fatalf("%d menode processes run on %s, want 1", len(pids), root)
	}
	if err := harness.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	poll(t, 10*time.Second, "the node dies with the killed test binary", func() (bool, string) {
		pids := nodesOn(root)
		return len(pids) == 0, fmt.Sprintf("still running: %v", pids)
	})
}

// TestHarness_child is the harness TestHarness_killed runs and kills.
func TestHarness_child(t *testing.T) {
	dir := os.Getenv("MENODE_HARNESS_CHILD")
	if dir == "" {
		return // only as TestHarness_killed's child, which it then kills
	}
	p := scriptParams(dir)
	setup := p.Setup
	p.Setup = func(env *testscript.Env) error {
		for _, k := range []string{"NODE_ROOT", "READY_FILE"} {
			env.Setenv(k, os.Getenv(k))
		}
		return setup(env)
	}
	testscript.Run(t, p)
}

// nodesOn lists the menode processes whose command line names root.
func nodesOn(root string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if filepath.Base(args[0]) == "menode" && strings.Contains(string(b), "\x00"+root+"\x00") {
			if pid, err := strconv.Atoi(e.Name()); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
