package actors

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// A repository view that cannot be built in time (its git work timed out)
// is an error for that command, not a panic that stops the node.
func TestRepos_viewTimeoutKeepsNodeUp(t *testing.T) {
	root := t.TempDir()
	db, err := persist.OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	_, creator := newKey(t)
	id, err := wire.NewRepoID(commitID(1), creator)
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]string{"refs/heads/main": commitID(1)}
	repo := persist.Repo{ID: id, Name: "r", Creator: creator, RootCommit: commitID(1), DefaultBranch: "main",
		Refs: refs, Clones: []string{t.TempDir()}}
	if err := db.PutRepo(repo); err != nil {
		t.Fatal(err)
	}
	if err := db.PutMirror(id, persist.Mirror{Refs: refs, DefaultBranch: "main"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// A view asks git whether the recorded clone is behind; git hangs, the
	// view's work times out.
	hangingGit(t, "")
	n, err := Start(Config{Root: root, Offline: true, WorkTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	for _, cmd := range []any{&ShowRepo{ID: id}, &ListRepos{}, &FollowRepo{ID: id, Follow: true}} {
		if res, err := n.Request(cmd); err == nil {
			t.Errorf("%T: got %T, want a timeout error", cmd, res)
		}
	}
	select {
	case <-n.Done():
		t.Fatal("the node stopped: a timed-out view crashed its root actor")
	default:
	}
	if _, err := n.Request(&GetStatus{}); err != nil {
		t.Errorf("status after the timeouts: %v", err)
	}
}

// Stopping a node in the middle of a clone stops the git that clones: no
// git process outlives its node.
func TestRepos_stopEndsGit(t *testing.T) {
	work := t.TempDir()
	gitT(t, work, "init", "-q", "-b", "main")
	gitT(t, work, "commit", "-q", "--allow-empty", "-m", "one")
	marks := hangingGit(t, "clone")
	root := t.TempDir()
	if _, _, err := persist.LoadOrCreateIdentity(persist.KeyPath(root)); err != nil {
		t.Fatal(err)
	}
	n, err := Start(Config{Root: root, Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			n.Stop()
		}
	})
	res, err := n.Request(&AddRepo{Path: work})
	if err != nil {
		t.Fatal(err)
	}
	id := res.(RepoView).ID
	go func() {
		// Stopped with the node: its reply never comes.
		_, _ = n.Request(&CloneRepo{ID: id, Output: filepath.Join(t.TempDir(), "clone")})
	}()
	var pid int
	eventually(t, 10*time.Second, "git clone started", func() bool {
		b, _ := os.ReadFile(marks)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0
	})
	n.Stop()
	stopped = true
	// Stop returns only once the git it killed has ended: a git still
	// running then could write into a root its owner is removing.
	if !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) && !zombie(pid) {
		t.Errorf("git clone (pid %d) still running when Node.Stop returned", pid)
	}
}

// zombie reports whether pid has exited and waits to be reaped.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// hangingGit puts a git first on PATH that passes every command to the
// real one but sub (every command when sub is empty), which records its
// PID in the returned file and hangs.
func hangingGit(t *testing.T, sub string) (pids string) {
	t.Helper()
	realGit, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	bin, pids := t.TempDir(), filepath.Join(t.TempDir(), "pids")
	hang := fmt.Sprintf("echo $$ >> %q; exec sleep 300", pids)
	script := fmt.Sprintf("#!/bin/sh\n%s\n", hang)
	if sub != "" {
		script = fmt.Sprintf("#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = %s ] && { %s; }; done\nexec %q \"$@\"\n", sub, hang, realGit)
	}
	if err := os.WriteFile(filepath.Join(bin, "git"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return pids
}
