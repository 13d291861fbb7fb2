package persist

import (
	"testing"

	"github.com/menode/menode/wire"
)

// TestStore_repoCount: CountRepos reads a count kept with the records:
// new records add to it, a record written again does not, a forgotten or
// removed one takes one off, a record put in a group counts, and a
// reopened store counts the same (its count is set again at open).
func TestStore_repoCount(t *testing.T) {
	root := t.TempDir()
	s := openTestStore(t, root)
	repo := func(b byte) Repo {
		return Repo{ID: wire.RepoID{b}, Name: "r", Creator: testNodeID(1), Refs: map[string]string{"refs/heads/main": "aa"}}
	}
	count := func(want int) {
		t.Helper()
		n, err := s.CountRepos()
		if err != nil || n != want {
			t.Fatalf("CountRepos = %d, %v; want %d", n, err, want)
		}
	}
	count(0)
	for b := byte(1); b <= 3; b++ {
		if err := s.PutRepo(repo(b)); err != nil {
			t.Fatal(err)
		}
	}
	count(3)
	r := repo(1)
	r.Name = "renamed"
	if err := s.PutRepo(r); err != nil {
		t.Fatal(err)
	}
	count(3)
	if _, err := s.ForgetRepo(wire.RepoID{3}); err != nil {
		t.Fatal(err)
	}
	count(2)
	if err := s.RemoveRepo(wire.RepoID{2}, false); err != nil {
		t.Fatal(err)
	}
	count(1)
	if err := s.Group(func(g *Store) {
		if err := g.PutRepo(repo(7)); err != nil {
			t.Error(err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	count(2)
	s.Close()
	s = openTestStore(t, root)
	count(2)
}
