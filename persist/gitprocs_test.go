package persist

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// gitCalls records the git commands run with the context it returns
// (their first argument).
type gitCalls struct {
	mu    sync.Mutex
	names []string
}

func (c *gitCalls) context(ctx context.Context) context.Context {
	return context.WithValue(ctx, gitObserverKey{}, func(args []string, _ *os.ProcessState) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i := 0; i < len(args); i++ {
			if args[i] == "-c" {
				i++
				continue
			}
			c.names = append(c.names, args[i])
			return
		}
	})
}

func (c *gitCalls) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.names
	c.names = nil
	return n
}

// TestIncoming_gitProcesses: a fetch into a new mirror runs three git
// processes (init, index-pack, one object look-up) and writes its refs as
// packed-refs, which git reads back (annotated tags peeled, HEAD set); a
// fetch into an existing mirror runs a handful, and setting refs that are
// already at their values writes nothing.
func TestIncoming_gitProcesses(t *testing.T) {
	gitTestEnv(t)
	src := richRepo(t)
	refs, err := GitRepo{Dir: src}.Refs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	id := testRepoID(t, git(t, src, "rev-list", "--max-parents=0", "trunk"))
	root := t.TempDir()
	var calls gitCalls
	ctx := calls.context(context.Background())
	fetch := func(haves ...string) []string {
		t.Helper()
		var buf bytes.Buffer
		names := make([]string, 0, len(refs))
		for name := range refs {
			names = append(names, name)
		}
		if err := (GitRepo{Dir: src}).CreateBundle(context.Background(), &buf, names, haves); err != nil {
			t.Fatal(err)
		}
		calls.take()
		in, err := NewIncoming(ctx, root, id, "trunk")
		if err != nil {
			t.Fatal(err)
		}
		defer in.Discard()
		if _, err := in.Repo.IndexBundleStream(ctx, &buf, refs, nil); err != nil {
			t.Fatal(err)
		}
		if err := in.CheckRefs(ctx, refs); err != nil {
			t.Fatal(err)
		}
		m, err := in.Commit(ctx, refs, "trunk")
		if err != nil {
			t.Fatal(err)
		}
		if err := m.MaybeRepack(ctx, 16); err != nil {
			t.Fatal(err)
		}
		return calls.take()
	}

	got := fetch()
	if want := "init index-pack cat-file"; strings.Join(got, " ") != want {
		t.Errorf("a fetch into a new mirror ran git %v, want %s", got, want)
	}
	mirror := MirrorPath(root, id)
	same := func() {
		t.Helper()
		if a, b := git(t, src, "for-each-ref", "--format=%(objectname) %(refname) %(*objectname)", "refs/heads", "refs/tags"),
			git(t, mirror, "for-each-ref", "--format=%(objectname) %(refname) %(*objectname)"); a != b {
			t.Errorf("the mirror's refs:\n%s\nwant:\n%s", b, a)
		}
		if h := git(t, mirror, "symbolic-ref", "HEAD"); h != "refs/heads/trunk" {
			t.Errorf("the mirror's HEAD is %s", h)
		}
		git(t, mirror, "fsck", "--strict", "--no-dangling")
	}
	same()
	if _, err := os.Stat(filepath.Join(mirror, "refs", "heads", "trunk")); err == nil {
		t.Error("a new mirror has loose refs")
	}
	if v := git(t, mirror, "config", "gc.auto"); v != "0" {
		t.Errorf("a new mirror has gc.auto %q", v)
	}

	commitFile(t, src, "d", "4")
	old := refs["refs/heads/trunk"]
	if refs, err = (GitRepo{Dir: src}).Refs(context.Background()); err != nil {
		t.Fatal(err)
	}
	got = fetch(old)
	if len(got) > 7 {
		t.Errorf("a fetch into an existing mirror ran %d git processes, want at most 7: %v", len(got), got)
	}
	same()

	m := GitRepo{Dir: mirror}
	calls.take()
	if err := m.SetRefs(ctx, refs, "trunk"); err != nil {
		t.Fatal(err)
	}
	for _, name := range calls.take() {
		if name == "update-ref" || name == "symbolic-ref" {
			t.Errorf("SetRefs of the refs the mirror has ran git %s", name)
		}
	}
	same()
}

// TestIncoming_newRefsChecked: a new mirror's refs, written without git,
// are checked as git update-ref checks them: a branch must name a commit,
// no ref may be a directory of another, every object must be held.
func TestIncoming_newRefsChecked(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	src := richRepo(t)
	all, err := GitRepo{Dir: src}.Refs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	trunk, tag := all["refs/heads/trunk"], all["refs/tags/v1"]
	id := testRepoID(t, git(t, src, "rev-list", "--max-parents=0", "trunk"))
	for _, c := range []struct {
		name    string
		refs    map[string]string
		missing bool
	}{
		{"a branch naming a tag", map[string]string{"refs/heads/trunk": trunk, "refs/heads/x": tag}, false},
		{"a ref under another", map[string]string{"refs/heads/trunk": trunk, "refs/heads/trunk/x": trunk}, false},
		{"an object nobody holds", map[string]string{"refs/heads/trunk": trunk, "refs/tags/gone": "1111111111111111111111111111111111111111"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			var buf bytes.Buffer
			if err := (GitRepo{Dir: src}).CreateBundle(ctx, &buf, []string{"refs/heads/trunk", "refs/tags/v1"}, nil); err != nil {
				t.Fatal(err)
			}
			in, err := NewIncoming(ctx, root, id, "trunk")
			if err != nil {
				t.Fatal(err)
			}
			defer in.Discard()
			if _, err := in.Repo.IndexBundleStream(ctx, &buf, map[string]string{"refs/heads/trunk": trunk, "refs/tags/v1": tag}, nil); err != nil {
				t.Fatal(err)
			}
			_, err = in.Commit(ctx, c.refs, "trunk") // without CheckRefs: Commit checks
			if err == nil || errors.Is(err, ErrMissingObjects) != c.missing {
				t.Fatalf("Commit = %v, want an error (ErrMissingObjects: %v)", err, c.missing)
			}
			if _, err := os.Stat(MirrorPath(root, id)); !os.IsNotExist(err) {
				t.Errorf("a refused Commit made the mirror (stat: %v)", err)
			}
		})
	}
}

// TestMirrorPublished_bitmap: a new mirror of a repository of at least
// bitmapObjects objects gets a reachability bitmap and packed refs; one
// below it gets neither repack; a later fetch into either repacks nothing.
func TestMirrorPublished_bitmap(t *testing.T) {
	gitTestEnv(t)
	// Fetches of a few objects would unpack them loose.
	t.Setenv("GIT_CONFIG_COUNT", "1")
	t.Setenv("GIT_CONFIG_KEY_0", "fetch.unpackLimit")
	t.Setenv("GIT_CONFIG_VALUE_0", "1")
	ctx := context.Background()
	src := richRepo(t)
	git(t, src, "repack", "-a", "-d", "-q") // packed, as the mirror borrows packs
	objects := int64(len(strings.Fields(git(t, src, "rev-list", "--all", "--objects"))))
	feature := git(t, src, "rev-parse", "feature")
	for _, c := range []struct {
		name    string
		limit   int64
		bitmap  bool
		publish RefPatterns
	}{
		{"at the limit", objects / 2, true, nil},
		{"below it", objects * 2, false, nil},
		{"at the limit, trunk published", objects / 2, true, RefPatterns{"refs/heads/trunk"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer func(v int64) { bitmapObjects = v }(bitmapObjects)
			bitmapObjects = c.limit
			m, err := InitMirror(ctx, filepath.Join(t.TempDir(), "m.git"), "trunk")
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := m.MirrorPublished(ctx, src, c.publish, "trunk"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(m.Dir, "objects", "info", "alternates")); err == nil {
				t.Error("the mirror still borrows objects")
			}
			if c.publish != nil {
				if err := exec.Command("git", "-C", m.Dir, "cat-file", "-e", feature).Run(); err == nil {
					t.Errorf("the mirror holds %s, which only an unpublished branch reaches", feature)
				}
				if got := git(t, m.Dir, "for-each-ref", "--format=%(refname)"); got != "refs/heads/trunk" {
					t.Errorf("the mirror's refs: %s", got)
				}
				return
			}
			bitmaps, _ := filepath.Glob(filepath.Join(m.Dir, "objects", "pack", "*.bitmap"))
			if (len(bitmaps) > 0) != c.bitmap {
				t.Errorf("bitmaps %v, want one: %v", bitmaps, c.bitmap)
			}
			if a, b := git(t, src, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"),
				git(t, m.Dir, "for-each-ref", "--format=%(objectname) %(refname)"); a != b {
				t.Errorf("the mirror's refs:\n%s\nwant:\n%s", b, a)
			}
			git(t, m.Dir, "fsck", "--strict", "--no-dangling")
			commitFile(t, src, "e-"+strings.ReplaceAll(c.name, " ", "-"), "5")
			packs, _ := filepath.Glob(filepath.Join(m.Dir, "objects", "pack", "*.pack"))
			if _, _, err := m.MirrorPublished(ctx, src, RefPatterns{}, "trunk"); err != nil {
				t.Fatal(err)
			}
			after, _ := filepath.Glob(filepath.Join(m.Dir, "objects", "pack", "*.pack"))
			if len(after) != len(packs)+1 {
				t.Errorf("a second fetch left %d packs, were %d: want one more", len(after), len(packs))
			}
		})
	}
}
