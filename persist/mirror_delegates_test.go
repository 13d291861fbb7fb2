package persist

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/menode/menode/wire"
)

// canonicalRepo: a mirror holding base <- ahead, and base <- other (a
// branch off base that ahead does not contain).
func canonicalRepo(t *testing.T) (m GitRepo, base, ahead, other string) {
	t.Helper()
	gitTestEnv(t)
	dir := filepath.Join(t.TempDir(), "work")
	git(t, filepath.Dir(dir), "init", "-q", "-b", "main", dir)
	base = commitFile(t, dir, "a", "1")
	ahead = commitFile(t, dir, "b", "2")
	git(t, dir, "checkout", "-q", "-b", "side", base)
	other = commitFile(t, dir, "c", "3")
	git(t, dir, "checkout", "-q", "main")
	m = newMirror(t)
	if _, err := m.MirrorFrom(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	return m, base, ahead, other
}

func TestGitRepo_CanonicalRefs(t *testing.T) {
	m, base, ahead, other := canonicalRepo(t)
	a, b, c := testNodeID(1), testNodeID(2), testNodeID(3)
	main := func(id string) map[string]string { return map[string]string{"refs/heads/main": id} }
	tests := []struct {
		name      string
		states    map[wire.NodeID]map[string]string
		threshold int
		want      string // "" : no canonical value
	}{
		{"all agree", map[wire.NodeID]map[string]string{a: main(base), b: main(base)}, 1, base},
		{"one built on the other: the newer", map[wire.NodeID]map[string]string{a: main(base), b: main(ahead)}, 1, ahead},
		{"diverged: none", map[wire.NodeID]map[string]string{a: main(ahead), b: main(other)}, 1, ""},
		{"2 of 3, one ahead: what two have", map[wire.NodeID]map[string]string{a: main(base), b: main(ahead), c: main(base)}, 2, base},
		{"2 of 3, two ahead", map[wire.NodeID]map[string]string{a: main(ahead), b: main(ahead), c: main(base)}, 2, ahead},
		{"2 of 3, all apart: the common base has votes", map[wire.NodeID]map[string]string{a: main(ahead), b: main(other), c: main(base)}, 2, base},
		{"3 of 3, one missing", map[wire.NodeID]map[string]string{a: main(base), b: main(base)}, 3, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := m.CanonicalRefs(context.Background(), tt.states, tt.threshold)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := c.Refs["refs/heads/main"]
			_, undecided := c.Undecided["refs/heads/main"]
			if tt.want == "" {
				if ok || !undecided {
					t.Fatalf("canonical main %s, want none (undecided: %v)", got, c.Undecided)
				}
				return
			}
			if got != tt.want || undecided {
				t.Fatalf("canonical main %s, want %s (undecided: %v)", got, tt.want, c.Undecided)
			}
		})
	}
	// Tags count equal values only: a tag moved by one delegate is not its.
	c2, err := m.CanonicalRefs(context.Background(), map[wire.NodeID]map[string]string{
		a: {"refs/tags/v1": base}, b: {"refs/tags/v1": ahead},
	}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c2.Refs["refs/tags/v1"]; ok {
		t.Fatal("a tag with two values got a canonical one")
	}
}

func TestGitRepo_WriteCanonical(t *testing.T) {
	m, base, ahead, other := canonicalRepo(t)
	ctx := context.Background()
	a, b, gone := testNodeID(1), testNodeID(2), testNodeID(3)
	in := func(d wire.NodeID, id string) {
		if err := m.setRefsUnder(ctx, DelegatePrefix(d), map[string]string{"refs/heads/main": id}); err != nil {
			t.Fatal(err)
		}
	}
	in(b, ahead)
	in(gone, other)
	states := map[wire.NodeID]map[string]string{a: {"refs/heads/main": base}, b: {"refs/heads/main": ahead}}
	if _, err := m.WriteCanonical(ctx, states, 1, "main", []wire.NodeID{a, b}); err != nil {
		t.Fatal(err)
	}
	refs := refsOf(t, m.Dir)
	if refs["refs/namespaces/canonical/refs/heads/main"] != ahead {
		t.Fatalf("canonical main: %v", refs)
	}
	if refs[DelegatePrefix(b)+"heads/main"] != ahead {
		t.Fatal("a delegate's refs were dropped")
	}
	for name := range refs {
		if strings.HasPrefix(name, DelegatePrefix(gone)) {
			t.Fatalf("refs of a removed delegate stay: %s", name)
		}
	}
	if refs["refs/heads/side"] == "" {
		t.Fatal("the creator's refs were touched")
	}
	if ns, err := CanonicalView(ctx, m.Dir); err != nil || ns != CanonicalNamespace {
		t.Fatalf("CanonicalView: %q, %v", ns, err)
	}
	// Setting the creator's refs leaves the others alone.
	if err := m.SetRefs(ctx, map[string]string{"refs/heads/main": base}, "main"); err != nil {
		t.Fatal(err)
	}
	if refs := refsOf(t, m.Dir); refs[DelegatePrefix(b)+"heads/main"] != ahead || refs["refs/namespaces/canonical/refs/heads/main"] != ahead {
		t.Fatalf("SetRefs deleted delegates' or canonical refs: %v", refs)
	}

	// They disagree: no canonical main, and a clone is refused with why.
	states[b] = map[string]string{"refs/heads/main": other}
	states[a] = map[string]string{"refs/heads/main": ahead}
	if _, err := m.WriteCanonical(ctx, states, 1, "main", []wire.NodeID{a, b}); err != nil {
		t.Fatal(err)
	}
	if _, err := CanonicalView(ctx, m.Dir); !errors.Is(err, ErrNoCanonical) || !strings.Contains(err.Error(), "disagree") {
		t.Fatalf("CanonicalView: %v, want ErrNoCanonical", err)
	}
	err := CloneMirror(ctx, m.Dir, filepath.Join(t.TempDir(), "clone"), "menode", "main", "")
	if !errors.Is(err, ErrNoCanonical) {
		t.Fatalf("clone with no canonical main: %v", err)
	}
	// Agreeing again, the clone checks out the canonical main.
	states[b] = map[string]string{"refs/heads/main": ahead}
	if _, err := m.WriteCanonical(ctx, states, 1, "main", []wire.NodeID{a, b}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "clone2")
	if err := CloneMirror(ctx, m.Dir, out, "menode", "main", ""); err != nil {
		t.Fatal(err)
	}
	if head := git(t, out, "rev-parse", "HEAD"); head != ahead {
		t.Fatalf("clone at %s, want the canonical %s", head, ahead)
	}
}
