package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serviceEnv is a temp HOME with a runtime directory of its own, and no
// way to reach this machine's systemd: uninstall's systemctl calls fail
// harmlessly instead of touching a real unit.
func serviceEnv(t *testing.T) (home string, env []string) {
	home = t.TempDir()
	run := filepath.Join(home, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	return home, []string{"HOME=" + home, "XDG_RUNTIME_DIR=" + run, "XDG_CONFIG_HOME=", "DBUS_SESSION_BUS_ADDRESS=unix:path=" + filepath.Join(run, "nobus"), "MEGAENGINE_ROOT="}
}

// installUnit runs service install --user into home and returns the
// unit's path and text.
func installUnit(t *testing.T, env []string, home string) (string, string) {
	t.Helper()
	out, errOut, code := runMenode(t, env, "service", "install", "--user")
	path := filepath.Join(home, ".config", "systemd", "user", unitName)
	if code != 0 || strings.TrimSpace(out) != path {
		t.Fatalf("service install --user: exit %d, stdout %q, stderr %q; want the unit's path %s", code, out, errOut, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, string(b)
}

func TestServiceInstall_unit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze not found; .ci/run installs Debian's systemd package")
		}
		t.Fatal("systemd-analyze not found (apt-get install systemd; .ci/run does)")
	}
	home, env := serviceEnv(t)
	path, unit := installUnit(t, env, home)
	root := filepath.Join(home, ".megaengine")
	for _, want := range []string{"Type=notify", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"PrivateTmp=yes", "ReadWritePaths=" + root + " %h", "ExecStart=", " --root " + root + " run\n", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit has no %q:\n%s", want, unit)
		}
	}
	cmd := exec.Command(analyze, "verify", "--user", path)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify --user: %v:\n%s", err, out)
	}

	// A second install does not replace it unless asked to.
	if _, errOut, code := runMenode(t, env, "service", "install", "--user"); code == 0 || !strings.Contains(errOut, "--force") {
		t.Errorf("second install: exit %d, %q; want a refusal naming --force", code, errOut)
	}
	out2, errOut, code := runMenode(t, env, "service", "status", "--user", "--json")
	var st serviceStatus
	if code != 0 || json.Unmarshal([]byte(out2), &st) != nil || !st.Installed || st.Unit != path || st.Root != root || st.Running {
		t.Errorf("service status: exit %d, %s %s; want installed at %s, root %s, not running", code, out2, errOut, path, root)
	}
	if out, errOut, code := runMenode(t, env, "service", "uninstall", "--user"); code != 0 || !strings.Contains(out, "removed") {
		t.Errorf("service uninstall: exit %d, %q %q", code, out, errOut)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("the unit is still there after uninstall")
	}
	if _, errOut, code := runMenode(t, env, "service", "uninstall", "--user"); code == 0 || !strings.Contains(errOut, "nothing to uninstall") {
		t.Errorf("uninstall twice: exit %d, %q", code, errOut)
	}
}

// execStart is the command line of the unit's ExecStart (unquoted words:
// the test's paths have no spaces).
func execStart(t *testing.T, unit string) []string {
	m := regexp.MustCompile(`(?m)^ExecStart=(.*)$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatalf("no ExecStart in:\n%s", unit)
	}
	return strings.Fields(m[1])
}

// lockedBuffer is a daemon's stderr, read while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startUnit starts the node as the unit would, with NOTIFY_SOCKET set to a
// socket the test reads; it is killed when the test ends.
func startUnit(t *testing.T, env []string, argv []string, notify string) (*exec.Cmd, *lockedBuffer, <-chan struct{}) {
	t.Helper()
	cmd := menodeCmd(t, append(env, "NOTIFY_SOCKET="+notify), argv[1:]...)
	cmd.Path = argv[0]
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return cmd, logs, done
}

// nextNotice reads the next datagram sent to systemd, failing after limit.
func nextNotice(t *testing.T, conn *net.UnixConn, limit time.Duration, logs *lockedBuffer) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(limit)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification within %s: %v; node log:\n%s", limit, err, logs)
	}
	return string(buf[:n])
}

func listenNotify(t *testing.T, dir string) (string, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return path, conn
}

func TestService_notifyReady(t *testing.T) {
	home, env := serviceEnv(t)
	_, unit := installUnit(t, env, home)
	root := filepath.Join(home, ".megaengine")
	writeConfig(t, root, "addr = \"127.0.0.1:0\"\nhttp-addr = \"\"\n")
	path, conn := listenNotify(t, home)
	cmd, logs, done := startUnit(t, env, execStart(t, unit), path)

	msg := nextNotice(t, conn, 30*time.Second, logs)
	// The first word to systemd is READY=1, and by then the control socket
	// answers as every other command reaches it.
	if err := askStatus(root); err != nil {
		t.Fatalf("READY sent (%q) but the control socket does not answer: %v", msg, err)
	}
	if !strings.Contains("\n"+msg+"\n", "\nREADY=1\n") {
		t.Fatalf("first notification %q, want READY=1", msg)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if msg := nextNotice(t, conn, 30*time.Second, logs); !strings.Contains("\n"+msg+"\n", "\nSTOPPING=1\n") {
		t.Errorf("after SIGTERM %q, want STOPPING=1", msg)
	}
	select {
	case <-done:
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("node exited with status %d after SIGTERM; log:\n%s", code, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("node did not stop within 30s of SIGTERM; log:\n%s", logs)
	}
	if _, err := os.Stat(filepath.Join(root, "menode.sock")); err == nil {
		t.Error("the control socket is still there after a clean stop")
	}
}
