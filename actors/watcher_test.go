package actors

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// TestWatcher_readChange: an unchanged repository costs no git at all (with
// git taken off PATH the poll still succeeds), and a commit is noticed.
func TestWatcher_readChange(t *testing.T) {
	gitIdentity(t)
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

// TestHardening2_watcherReadsOnlyOwnRepos (hardening finding 2): the
// watcher loaded and decoded every repository record, gossiped ones
// included, at every tick (72-79 % CPU while idle with 200 large ones). It
// reads the store once at start and then touches only the repositories
// this node created.
func TestHardening2_watcherReadsOnlyOwnRepos(t *testing.T) {
	gitIdentity(t)
	repo := func(name string, id byte) persist.Repo {
		dir := filepath.Join(t.TempDir(), name)
		for _, args := range [][]string{{"init", "-q", "-b", "main", dir}, {"-C", dir, "commit", "-q", "--allow-empty", "-m", "one"}} {
			if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
				t.Fatalf("git %v: %v\n%s", args, err, out)
			}
		}
		return persist.Repo{ID: wire.RepoID{id}, Name: name, Path: dir, Local: true}
	}
	first, second := repo("first", 1), repo("second", 2)
	states := []repoState{{Repo: first}}
	for i := range 100 {
		states = append(states, repoState{Repo: persist.Repo{ID: wire.RepoID{9, byte(i)}, Name: "learned"}})
	}
	var mu sync.Mutex
	loads, updated := 0, map[wire.RepoID]bool{}
	system := actor.NewActorSystem()
	store := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		mu.Lock()
		defer mu.Unlock()
		switch m := ctx.Message().(type) {
		case *loadRepos:
			loads++
			var out []repoState
			for _, st := range states {
				if m.Filter != persist.FilterLocal || st.Repo.Local {
					out = append(out, st)
				}
			}
			ctx.Respond(out)
		case *updateRepo:
			updated[m.Repo.ID] = true
			ctx.Respond(repoState{Repo: m.Repo})
		}
	}))
	sink := system.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	w := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &watcher{root: t.TempDir(), interval: 10 * time.Millisecond, store: store, gossip: sink, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}))
	t.Cleanup(func() {
		_ = system.Root.PoisonFuture(w).Wait()
		system.Shutdown()
	})
	system.Root.Send(w, &watchRepo{Repo: second})
	eventually(t, 10*time.Second, "both owned repositories read", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return updated[first.ID] && updated[second.ID]
	})
	mu.Lock()
	defer mu.Unlock()
	if loads != 1 {
		t.Errorf("the store was read %d times, want once at start", loads)
	}
	for id := range updated {
		if id != first.ID && id != second.ID {
			t.Errorf("the watcher touched %s, which this node did not create", id)
		}
	}
}

// A commit in a watched repository is noticed at once, through inotify,
// not at the next poll: here the poll interval is an hour.
func TestWatcher_commitNoticedAtOnce(t *testing.T) {
	gitIdentity(t)
	dir := filepath.Join(t.TempDir(), "work")
	git := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "init", "-q", "-b", "main", dir).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	git("commit", "-q", "--allow-empty", "-m", "one")
	var mu sync.Mutex
	heads := map[string]bool{} // heads of main the watcher stored
	system := actor.NewActorSystem()
	store := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		mu.Lock()
		defer mu.Unlock()
		switch m := ctx.Message().(type) {
		case *loadRepos:
			ctx.Respond([]repoState{{Repo: persist.Repo{ID: wire.RepoID{1}, Name: "work", Path: dir, Local: true}}})
		case *updateRepo:
			heads[m.Repo.Refs["refs/heads/main"]] = true
			ctx.Respond(repoState{Repo: m.Repo})
		}
	}))
	sink := system.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	w := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &watcher{root: t.TempDir(), interval: time.Hour, store: store, gossip: sink, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}))
	t.Cleanup(func() {
		_ = system.Root.PoisonFuture(w).Wait()
		system.Shutdown()
	})
	first := git("rev-parse", "main")
	eventually(t, 10*time.Second, "the first poll, at start", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return heads[first]
	})
	for i := range 3 { // and again: a wake-up during a poll is not lost
		git("commit", "-q", "--allow-empty", "-m", fmt.Sprint("more ", i))
		head := git("rev-parse", "main")
		eventually(t, 10*time.Second, "a commit noticed without waiting for the hourly poll", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return heads[head]
		})
	}
}

// gitIdentity has git ignore this machine's config and commit as a fixed
// author, for the rest of the test.
func gitIdentity(t *testing.T) {
	t.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	for _, k := range []string{"GIT_AUTHOR", "GIT_COMMITTER"} {
		t.Setenv(k+"_NAME", "t")
		t.Setenv(k+"_EMAIL", "t@example.invalid")
	}
}
