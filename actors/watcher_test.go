package actors

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// TestWatcher_readChange: an unchanged repository costs no git at all (with
// git taken off PATH the poll still succeeds), and a commit is noticed.
func TestWatcher_readChange(t *testing.T) {
	t.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	for _, k := range []string{"GIT_AUTHOR", "GIT_COMMITTER"} {
		t.Setenv(k+"_NAME", "t")
		t.Setenv(k+"_EMAIL", "t@example.invalid")
	}
	dir := filepath.Join(t.TempDir(), "work")
	git := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("git", append([]string{"-C", filepath.Dir(dir)}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main", dir)
	git("-C", dir, "commit", "-q", "--allow-empty", "-m", "one")
	ctx := context.Background()
	root := t.TempDir()
	r := persist.Repo{ID: wire.RepoID{1}, Path: dir, Local: true}

	// First poll: git runs, everything is new.
	c, err := readChange(ctx, root, r, refsStamp{})
	if err != nil || c.changed == nil {
		t.Fatalf("first poll: change %v, err %v; want a change", c.changed, err)
	}
	r = *c.changed
	if r.DefaultBranch != "main" || r.Refs["refs/heads/main"] != git("-C", dir, "rev-parse", "main") {
		t.Fatalf("first poll read %+v", r)
	}
	// The refs read are the mirror's: the node serves the mirror.
	if got := git("-C", persist.MirrorPath(root, r.ID), "rev-parse", "refs/heads/main"); got != r.Refs["refs/heads/main"] {
		t.Fatalf("mirror main = %s, want %s", got, r.Refs["refs/heads/main"])
	}

	// Nothing changed: no git needed.
	path := os.Getenv("PATH")
	t.Setenv("PATH", "")
	c, err = readChange(ctx, root, r, c.stamp)
	if err != nil || c.changed != nil {
		t.Fatalf("unchanged poll without git: change %v, err %v; want none and no error", c.changed, err)
	}

	// A commit moves the stamp: the poll needs git again (and fails without it).
	t.Setenv("PATH", path)
	git("-C", dir, "commit", "-q", "--allow-empty", "-m", "two")
	t.Setenv("PATH", "")
	if _, err := readChange(ctx, root, r, c.stamp); err == nil {
		t.Fatal("poll after a commit did not run git")
	}
	t.Setenv("PATH", path)
	c2, err := readChange(ctx, root, r, c.stamp)
	if err != nil || c2.changed == nil || c2.changed.Refs["refs/heads/main"] != git("-C", dir, "rev-parse", "main") {
		t.Fatalf("poll after a commit: change %+v, err %v; want the new head", c2.changed, err)
	}
}
