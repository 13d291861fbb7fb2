package persist

import (
	"context"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

// objectsText is every object of repository dir, uncompressed, as `git
// cat-file --batch-all-objects --batch` prints them.
func objectsText(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", dir, "cat-file", "--batch-all-objects", "--batch").CombinedOutput()
	if err != nil {
		t.Fatalf("cat-file in %s: %v\n%s", dir, err, out)
	}
	return string(out)
}

func TestGitRepo_MirrorPublished(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	src := richRepo(t)
	// A branch whose commit and blob nothing published reaches.
	git(t, src, "checkout", "-q", "-b", "private")
	const secret = "secret-7f3c9e1d"
	privateCommit := commitFile(t, src, "s", secret)
	git(t, src, "checkout", "-q", "trunk")
	all, err := GitRepo{Dir: src}.Refs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := newMirror(t)

	t.Run("only the published refs and their objects", func(t *testing.T) {
		publish := RefPatterns{"refs/heads/trunk", "refs/tags/v*"}
		got, head, err := m.MirrorPublished(ctx, src, publish, "private")
		if err != nil {
			t.Fatal(err)
		}
		want := publish.Filter(all)
		if len(want) != 3 || !reflect.DeepEqual(got, want) {
			t.Errorf("MirrorPublished = %v\nwant %v (trunk, v1, v1-again)", got, want)
		}
		if held := refsOf(t, m.Dir); !reflect.DeepEqual(held, want) {
			t.Errorf("mirror holds %v\nwant exactly %v", held, want)
		}
		if head != "trunk" {
			t.Errorf("head = %q, want trunk (private is not published)", head)
		}
		if have, _ := m.HaveObjects(ctx, []string{privateCommit}); len(have) != 0 {
			t.Error("the mirror holds the private commit")
		}
		if strings.Contains(objectsText(t, m.Dir), secret) {
			t.Error("the mirror holds the private blob")
		}
	})
	t.Run("published later, then unpublished and dropped", func(t *testing.T) {
		publish := RefPatterns{"refs/heads/trunk", "refs/heads/private"}
		got, _, err := m.MirrorPublished(ctx, src, publish, "private")
		if err != nil {
			t.Fatal(err)
		}
		if got["refs/heads/private"] != privateCommit {
			t.Fatalf("refs after publishing private = %v", got)
		}
		if !strings.Contains(objectsText(t, m.Dir), secret) {
			t.Fatal("the published private blob is not in the mirror")
		}
		got, _, err = m.MirrorPublished(ctx, src, RefPatterns{"refs/heads/trunk"}, "private")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got["refs/heads/private"]; ok || len(got) != 1 {
			t.Errorf("refs after unpublishing = %v, want trunk alone", got)
		}
		if err := m.DropUnreachable(ctx); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(objectsText(t, m.Dir), secret) {
			t.Error("DropUnreachable left the unpublished blob in the mirror")
		}
		if have, _ := m.HaveObjects(ctx, []string{all["refs/heads/trunk"]}); len(have) != 1 {
			t.Error("DropUnreachable dropped the published branch's commit")
		}
	})
	t.Run("a deleted branch goes from the mirror", func(t *testing.T) {
		publish := RefPatterns{"refs/heads/*"}
		if _, _, err := m.MirrorPublished(ctx, src, publish, "trunk"); err != nil {
			t.Fatal(err)
		}
		git(t, src, "branch", "-D", "feature")
		got, _, err := m.MirrorPublished(ctx, src, publish, "trunk")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got["refs/heads/feature"]; ok {
			t.Errorf("refs = %v still hold the deleted branch", got)
		}
		if held := refsOf(t, m.Dir); !reflect.DeepEqual(held, got) {
			t.Errorf("mirror holds %v, want %v", held, got)
		}
	})
	t.Run("default patterns are MirrorFrom", func(t *testing.T) {
		got, head, err := m.MirrorPublished(ctx, src, nil, "trunk")
		if err != nil {
			t.Fatal(err)
		}
		want, _ := GitRepo{Dir: src}.Refs(ctx)
		if !reflect.DeepEqual(got, want) || head != "trunk" {
			t.Errorf("MirrorPublished(nil) = %v, %q; want %v, trunk", got, head, want)
		}
	})
}
