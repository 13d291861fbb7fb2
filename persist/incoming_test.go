package persist

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestIncoming_quarantine: what a fetch indexes stays in the quarantine
// until Commit; Discard leaves the mirror (or its absence) as it was;
// Commit moves the pack in, or the whole new mirror into place, and sets
// the refs; CheckRefs refuses refs whose objects nobody holds.
func TestIncoming_quarantine(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	git(t, filepath.Dir(src), "init", "-q", "-b", "main", src)
	c1 := commitFile(t, src, "a", "1")
	c2 := commitFile(t, src, "b", "2")
	id := testRepoID(t, c1)
	root := t.TempDir()
	mirror := MirrorPath(root, id)
	bundle := func(t *testing.T, haves ...string) *bytes.Reader {
		t.Helper()
		var buf bytes.Buffer
		if err := (GitRepo{Dir: src}).CreateBundle(ctx, &buf, []string{"refs/heads/main"}, haves); err != nil {
			t.Fatal(err)
		}
		return bytes.NewReader(buf.Bytes())
	}
	index := func(t *testing.T, refs map[string]string, haves ...string) *Incoming {
		t.Helper()
		in, err := NewIncoming(ctx, root, id, "main")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := in.Repo.IndexBundleStream(ctx, bundle(t, haves...), refs, nil); err != nil {
			t.Fatal(err)
		}
		if err := in.CheckRefs(ctx, refs); err != nil {
			t.Fatal(err)
		}
		return in
	}
	first := map[string]string{"refs/heads/main": c1}
	second := map[string]string{"refs/heads/main": c2}
	git(t, src, "update-ref", "refs/heads/main", c1)

	index(t, first).Discard()
	if _, err := os.Stat(mirror); !os.IsNotExist(err) {
		t.Fatalf("a discarded first fetch left the mirror %s (stat: %v)", mirror, err)
	}
	if m, err := index(t, first).Commit(ctx, first, "main"); err != nil || m.Dir != mirror {
		t.Fatalf("Commit = %v, %v; want the mirror %s", m, err, mirror)
	}
	if got := git(t, mirror, "rev-parse", "refs/heads/main"); got != c1 {
		t.Fatalf("the new mirror's main is %s, want %s", got, c1)
	}
	if _, err := os.Stat(IncomingPath(root, id)); !os.IsNotExist(err) {
		t.Errorf("the quarantine is left after Commit (stat: %v)", err)
	}

	git(t, src, "update-ref", "refs/heads/main", c2)
	packs := func() []string {
		p, _ := filepath.Glob(filepath.Join(mirror, "objects", "pack", "*"))
		return p
	}
	before := packs()
	in := index(t, second, c1) // thin: its base is in the mirror
	in.Discard()
	if after := packs(); len(after) != len(before) {
		t.Errorf("a discarded fetch changed the mirror's packs: %v, were %v", after, before)
	}
	if held, _ := (GitRepo{Dir: mirror}).HaveObjects(ctx, []string{c2}); len(held) != 0 {
		t.Error("the mirror holds an object of a discarded fetch")
	}
	in = index(t, second, c1)
	if _, err := in.Commit(ctx, second, "main"); err != nil {
		t.Fatal(err)
	}
	in.Discard()
	if got := git(t, mirror, "rev-parse", "refs/heads/main"); got != c2 {
		t.Errorf("the mirror's main is %s, want %s", got, c2)
	}
	git(t, mirror, "fsck", "--strict")

	in, err := NewIncoming(ctx, root, id, "main")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Discard()
	if err := in.CheckRefs(ctx, map[string]string{"refs/heads/main": "1111111111111111111111111111111111111111"}); !errors.Is(err, ErrMissingObjects) {
		t.Errorf("CheckRefs of an object nobody holds = %v, want ErrMissingObjects", err)
	}
}
