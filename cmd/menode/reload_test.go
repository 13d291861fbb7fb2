package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gitIn runs git in dir with no config of this machine's.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// waitFor polls check until it holds, failing after limit.
func waitFor(t *testing.T, limit time.Duration, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(50 * time.Millisecond) // pacing between attempts
	}
}

func TestReload_SIGHUP(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	// The watcher would look at the repository again in an hour.
	writeConfig(t, root, "addr = \"127.0.0.1:0\"\nhttp-addr = \"\"\nalias = \"one\"\nwatch-interval = \"1h\"\n")
	work := filepath.Join(dir, "work")
	gitIn(t, dir, "init", "-q", "-b", "main", work)
	gitIn(t, work, "commit", "-q", "--allow-empty", "-m", "first")

	path, conn := listenNotify(t, dir)
	cmd, logs, _ := startUnit(t, nil, []string{cmd0(t), "--root", root, "run"}, path)
	if msg := nextNotice(t, conn, 30*time.Second, logs); !strings.Contains(msg, "READY=1") {
		t.Fatalf("first notification %q", msg)
	}
	out, errOut, code := runMenode(t, nil, "--root", root, "repo", "add", "--path", work)
	if code != 0 {
		t.Fatalf("repo add: exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	gitIn(t, work, "commit", "-q", "--allow-empty", "-m", "second")
	head := gitIn(t, work, "rev-parse", "HEAD")

	writeConfig(t, root, "addr = \"127.0.0.1:0\"\nhttp-addr = \"\"\nalias = \"two\"\nwatch-interval = 0.1\nlog-level = \"debug\"\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The new watch interval really is in force: the new commit is seen.
	waitFor(t, 20*time.Second, "the watcher sees the new commit after SIGHUP", func() bool {
		out, _, code := runMenode(t, nil, "--root", root, "repo", "show", "--repo-id", id, "--json")
		var v struct {
			Refs map[string]string `json:"refs"`
		}
		return code == 0 && json.Unmarshal([]byte(out), &v) == nil && v.Refs["refs/heads/main"] == head
	})
	// The reload is logged, and debug lines follow (the watcher may have
	// seen the commit before the reload: poll for them).
	wants := []string{`msg="reloaded settings" changed="[log-level=debug watch-interval=100ms]"`, `settings=[alias]`, "level=DEBUG"}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		log := logs.String()
		missing := slices.IndexFunc(wants, func(w string) bool { return !strings.Contains(log, w) })
		if missing < 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log has no %q within 20s:\n%s", wants[missing], log)
		}
	}

	// A file that does not parse is refused; the node runs on.
	writeConfig(t, root, "watch-interval = \"soon\"\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the bad file is refused", func() bool {
		return strings.Contains(logs.String(), `msg="reload refused; the settings stay as they were" err="`+filepath.Join(root, configName)+`:1: watch-interval: `)
	})
	if err := askStatus(root); err != nil {
		t.Errorf("the node stopped answering after a refused reload: %v", err)
	}
}

// cmd0 is the path of this test binary, which runs as menode.
func cmd0(t *testing.T) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}
