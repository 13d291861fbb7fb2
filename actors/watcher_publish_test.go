package actors

import (
	"io"
	"log/slog"
	"maps"
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

// TestWatcher_republish: republishRepo is answered once the refs its new
// patterns publish are stored and gossip is asked to announce them; the
// mirror drops what is no longer published; of two asks in a row, the
// second (mostly sent while the first is read) is what ends up stored, and
// both are answered.
func TestWatcher_republish(t *testing.T) {
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
	main := git("rev-parse", "HEAD")
	git("checkout", "-q", "-b", "private")
	git("commit", "-q", "--allow-empty", "-m", "private")
	private := git("rev-parse", "HEAD")

	id := wire.RepoID{7}
	record := persist.Repo{ID: id, Name: "work", Path: dir, Local: true, Publish: persist.RefPatterns{"refs/heads/main"}}
	var mu sync.Mutex
	var stored, announced map[string]string
	system := actor.NewActorSystem()
	store := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		mu.Lock()
		defer mu.Unlock()
		switch m := ctx.Message().(type) {
		case *loadRepos:
			ctx.Respond([]repoState{{Repo: record}})
		case *updateRepo:
			stored = maps.Clone(m.Repo.Refs)
			ctx.Respond(repoState{Repo: m.Repo})
		}
	}))
	gossip := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*announceRepos); ok {
			mu.Lock()
			announced = maps.Clone(m.Repos[0].Refs)
			mu.Unlock()
		}
	}))
	root := t.TempDir()
	w := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &watcher{root: root, interval: time.Hour, store: store, gossip: gossip, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}))
	t.Cleanup(func() {
		_ = system.Root.PoisonFuture(w).Wait()
		system.Shutdown()
	})
	mirror := persist.MirrorPath(root, id)
	holds := func(obj string) bool { return exec.Command("git", "-C", mirror, "cat-file", "-e", obj).Run() == nil }
	onlyMain := map[string]string{"refs/heads/main": main}
	both := map[string]string{"refs/heads/main": main, "refs/heads/private": private}
	// Stored before the answer; gossip asked before it too, and takes it
	// from its mailbox a moment later.
	check := func(when string, want map[string]string) {
		t.Helper()
		mu.Lock()
		if !maps.Equal(stored, want) {
			t.Errorf("%s: stored %v, want %v", when, stored, want)
		}
		mu.Unlock()
		eventually(t, 10*time.Second, when+": announced", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return maps.Equal(announced, want)
		})
	}
	eventually(t, 10*time.Second, "the first poll, at start", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return maps.Equal(announced, onlyMain)
	})
	if holds(private) {
		t.Error("the mirror holds the private commit before it is published")
	}
	ask := func(p persist.RefPatterns) *actor.Future {
		r := record
		r.Publish = p
		return system.Root.RequestFuture(w, &republishRepo{Repo: r}, time.Minute)
	}
	answered := func(f *actor.Future) {
		t.Helper()
		res, err := f.Result()
		if err != nil || res != true {
			t.Fatalf("republish answered %v, %v; want true", res, err)
		}
	}

	answered(ask(persist.RefPatterns{"refs/heads/main", "refs/heads/private"}))
	check("after publishing private", both)
	if !holds(private) {
		t.Error("the mirror lacks the published private commit")
	}
	answered(ask(persist.RefPatterns{"refs/heads/main"}))
	check("after unpublishing private", onlyMain)
	if holds(private) {
		t.Error("the mirror still holds the unpublished private commit")
	}
	// Unchanged patterns: answered all the same.
	answered(ask(persist.RefPatterns{"refs/heads/main"}))

	// Two in a row: the second mostly comes while the first is read.
	first, second := ask(persist.RefPatterns{"refs/heads/main", "refs/heads/private"}), ask(persist.RefPatterns{"refs/heads/main"})
	answered(first)
	answered(second)
	check("after publish then unpublish in a row", onlyMain)
	if holds(private) {
		t.Error("after the second ask the mirror holds the private commit")
	}
}
