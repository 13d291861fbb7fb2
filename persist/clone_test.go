package persist

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/menode/menode/wire"
)

func TestCloneMirror_behavior(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	f := newSyncFixture(t) // the receiver's mirror holds richRepo's refs
	tests := []struct {
		name    string
		out     func(t *testing.T) string
		remote  string
		branch  string
		url     string // "" keeps the mirror's path
		wantIs  error
		wantMsg string // "" means success
	}{
		{name: "missing dir, parents created", remote: "menode", branch: "trunk", out: func(t *testing.T) string {
			return filepath.Join(t.TempDir(), "a", "b", "clone")
		}},
		{name: "empty dir, menode URL", remote: "menode", branch: "feature", url: RemoteURL(wire.RepoID{7}), out: func(t *testing.T) string { return t.TempDir() }},
		{name: "relative path", remote: "menode", branch: "trunk", out: func(t *testing.T) string {
			t.Chdir(t.TempDir())
			return "rel"
		}},
		{name: "non-empty dir", remote: "menode", branch: "trunk", wantIs: ErrNotEmpty, wantMsg: "exists and is not empty",
			out: func(t *testing.T) string {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("mine"), 0o600); err != nil {
					t.Fatal(err)
				}
				return dir
			}},
		{name: "a file", remote: "menode", branch: "trunk", wantIs: ErrNotEmpty, wantMsg: "exists and is not empty",
			out: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "file")
				if err := os.WriteFile(p, []byte("mine"), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}},
		{name: "unknown branch leaves nothing", remote: "menode", branch: "nope", wantMsg: "nope",
			out: func(t *testing.T) string { return filepath.Join(t.TempDir(), "clone") }},
		{name: "bad remote name", remote: "--upload-pack=x", branch: "trunk", wantMsg: "remote name",
			out: func(t *testing.T) string { return filepath.Join(t.TempDir(), "clone") }},
		{name: "bad branch", remote: "menode", branch: "a..b", wantMsg: "a..b",
			out: func(t *testing.T) string { return filepath.Join(t.TempDir(), "clone") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := tt.out(t)
			_, statErr := os.Stat(out)
			existed := statErr == nil
			err := CloneMirror(ctx, f.receiver.Dir, out, tt.remote, tt.branch, tt.url)
			if tt.wantMsg != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantMsg) || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) {
					t.Fatalf("CloneMirror = %v, want %v containing %q", err, tt.wantIs, tt.wantMsg)
				}
				if _, err := os.Stat(out); existed != (err == nil) {
					t.Errorf("out existed %t before, stat now: %v", existed, err)
				}
				if existed {
					if entries, _ := os.ReadDir(out); len(entries) > 1 {
						t.Errorf("clone wrote into %s: %v", out, entries)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			abs, _ := filepath.Abs(out)
			if got := git(t, abs, "symbolic-ref", "--short", "HEAD"); got != tt.branch {
				t.Errorf("checked out %s, want %s", got, tt.branch)
			}
			wantURL := tt.url
			if wantURL == "" {
				wantURL = f.receiver.Dir
			}
			if got := git(t, abs, "config", "--get", "remote."+tt.remote+".url"); got != wantURL {
				t.Errorf("remote URL %s, want %s", got, wantURL)
			}
			g := GitRepo{Dir: abs}
			remote, err := g.RemoteRefs(ctx, tt.remote)
			if err != nil {
				t.Fatal(err)
			}
			tags, err := g.Refs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for name, id := range f.signed {
				if strings.HasPrefix(name, "refs/heads/") && remote[name] != id {
					t.Errorf("remote-tracking %s = %q, want %s", name, remote[name], id)
				}
				if strings.HasPrefix(name, "refs/tags/") && tags[name] != id {
					t.Errorf("tag %s = %q, want %s", name, tags[name], id)
				}
			}
		})
	}
}

func TestGitRepo_Pull(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	f := newSyncFixture(t)
	clone := filepath.Join(t.TempDir(), "clone")
	// The remote's URL is one only git-remote-menode could fetch: Pull
	// must not use it.
	if err := CloneMirror(ctx, f.receiver.Dir, clone, "menode", "trunk", RemoteURL(wire.RepoID{9})); err != nil {
		t.Fatal(err)
	}
	g := GitRepo{Dir: clone}
	// sync brings the creator's changes into the receiver's mirror.
	sync := func(t *testing.T) {
		f.mirror(t)
		if err := f.receiver.ApplyBundle(ctx, f.update(t), f.signed, "trunk", nil); err != nil {
			t.Fatal(err)
		}
	}
	remoteHeads := func() map[string]string {
		want := make(map[string]string)
		for name, id := range f.signed {
			if strings.HasPrefix(name, "refs/heads/") {
				want[name] = id
			}
		}
		return want
	}
	steps := []struct {
		name     string
		mode     PullMode
		do       func(t *testing.T)
		wantHead func(t *testing.T) string // "" with wantMsg set: an error
		wantMsg  string
		wantIs   error // with wantMsg: the error wraps it, and HEAD stays
	}{
		{name: "up to date", do: func(t *testing.T) {},
			wantHead: func(t *testing.T) string { return f.signed["refs/heads/trunk"] }},
		{name: "fast-forward, other branches and tags too", do: func(t *testing.T) {
			commitFile(t, f.src, "new", "1")
			git(t, f.src, "branch", "-f", "feature", "trunk~1")
			git(t, f.src, "branch", "added", "trunk")
			git(t, f.src, "tag", "-a", "-m", "two", "v2")
			sync(t)
		}, wantHead: func(t *testing.T) string { return f.signed["refs/heads/trunk"] }},
		{name: "diverged: a fast-forward only, by default", do: func(t *testing.T) {
			commitFile(t, clone, "local", "mine")
			commitFile(t, f.src, "upstream", "theirs")
			sync(t)
		}, wantMsg: "not a fast-forward: trunk has commits the mirror's trunk lacks and the other way round; choose: menode repo pull --merge", wantIs: ErrNotFastForward},
		{name: "merge when asked", mode: PullMerge, do: func(t *testing.T) {}, wantHead: func(t *testing.T) string {
			head := git(t, clone, "rev-parse", "HEAD")
			parents := strings.Fields(git(t, clone, "rev-list", "--parents", "-n1", "HEAD"))
			if len(parents) != 3 || parents[2] != f.signed["refs/heads/trunk"] {
				t.Errorf("HEAD %v is not a merge of the mirror's trunk", parents)
			}
			return head
		}},
		{name: "rebase when asked", mode: PullRebase, do: func(t *testing.T) {
			commitFile(t, clone, "local2", "mine")
			commitFile(t, f.src, "upstream2", "theirs")
			sync(t)
		}, wantHead: func(t *testing.T) string {
			trunk := f.signed["refs/heads/trunk"]
			// local and local2 replayed on the mirror's trunk, no merge.
			if n := git(t, clone, "rev-list", "--count", trunk+"..HEAD"); n != "2" {
				t.Errorf("%s commits on top of the mirror's trunk, want 2", n)
			}
			if m := git(t, clone, "rev-list", "--merges", trunk+"..HEAD"); m != "" || git(t, clone, "merge-base", "HEAD", trunk) != trunk {
				t.Errorf("HEAD is not linear on top of the mirror's trunk (merges %q)", m)
			}
			if got := git(t, clone, "show", "HEAD:local2"); got != "mine" {
				t.Errorf("the local commit was not replayed: local2 is %q", got)
			}
			return git(t, clone, "rev-parse", "HEAD")
		}},
		{name: "local changes in the way: git's reason, the files, the way on", mode: PullMerge, do: func(t *testing.T) {
			commitFile(t, f.src, "shared", "v1")
			sync(t)
			if _, err := g.Pull(ctx, "menode", f.receiver.Dir, PullMerge); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(clone, "shared"), []byte("edited here"), 0o644); err != nil {
				t.Fatal(err)
			}
			commitFile(t, f.src, "shared", "v2")
			sync(t)
		}, wantMsg: "would be overwritten by merge:; local changes: shared; commit or stash them (git stash), then pull again"},
		{name: "a conflict in a merge", mode: PullMerge, do: func(t *testing.T) {
			git(t, clone, "checkout", "--", "shared")
			commitFile(t, clone, "shared", "mine")
		}, wantMsg: "Automatic merge failed; fix conflicts and then commit the result.; CONFLICT (content): Merge conflict in shared; or undo the merge: git merge --abort"},
		{name: "other branch checked out", do: func(t *testing.T) {
			git(t, clone, "merge", "--abort")
			git(t, clone, "checkout", "-q", "feature")
		}, wantHead: func(t *testing.T) string { return f.signed["refs/heads/feature"] }},
		{name: "detached HEAD", do: func(t *testing.T) {
			git(t, clone, "checkout", "-q", "--detach")
		}, wantMsg: "HEAD is detached; check out a branch first"},
		{name: "branch the mirror lacks", do: func(t *testing.T) {
			git(t, clone, "checkout", "-q", "-b", "only-here")
		}, wantMsg: "only-here"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do(t)
			before := git(t, clone, "rev-parse", "HEAD")
			head, err := g.Pull(ctx, "menode", f.receiver.Dir, st.mode)
			if st.wantMsg != "" {
				if err == nil || !strings.Contains(err.Error(), st.wantMsg) {
					t.Fatalf("Pull = %q, %v; want error containing %q", head, err, st.wantMsg)
				}
				if st.wantIs != nil && !errors.Is(err, st.wantIs) {
					t.Errorf("error does not wrap %v", st.wantIs)
				}
				if after := git(t, clone, "rev-parse", "HEAD"); st.wantIs != nil && after != before {
					t.Errorf("HEAD moved from %s to %s", before, after)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := st.wantHead(t); head != want {
				t.Errorf("Pull = %s, want %s", head, want)
			}
			got, err := g.RemoteRefs(ctx, "menode")
			if err != nil {
				t.Fatal(err)
			}
			if want := remoteHeads(); !reflect.DeepEqual(got, want) {
				t.Errorf("RemoteRefs = %v\nwant %v", got, want)
			}
			if v2, ok := f.signed["refs/tags/v2"]; ok {
				if got := git(t, clone, "rev-parse", "refs/tags/v2"); got != v2 {
					t.Errorf("tag v2 = %s, want %s", got, v2)
				}
			}
		})
	}
}

func TestGitRepo_RemoteRefs(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	dir := richRepo(t)
	trunk := git(t, dir, "rev-parse", "trunk")
	feature := git(t, dir, "rev-parse", "feature")
	git(t, dir, "update-ref", "refs/remotes/menode/trunk", trunk)
	git(t, dir, "update-ref", "refs/remotes/menode/team/x", feature)
	git(t, dir, "symbolic-ref", "refs/remotes/menode/HEAD", "refs/remotes/menode/trunk")
	git(t, dir, "update-ref", "refs/remotes/menode-other/trunk", feature)
	git(t, dir, "update-ref", "refs/remotes/origin/trunk", feature)
	tests := []struct {
		name    string
		remote  string
		want    map[string]string
		wantErr bool
	}{
		{name: "menode", remote: "menode", want: map[string]string{"refs/heads/trunk": trunk, "refs/heads/team/x": feature}},
		{name: "none", remote: "nobody", want: map[string]string{}},
		{name: "bad name", remote: "a/b", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := GitRepo{Dir: dir}.RemoteRefs(ctx, tt.remote)
			if tt.wantErr {
				if err == nil {
					t.Fatal("RemoteRefs succeeded, want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("RemoteRefs = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGitRepo_HeadAndBranch(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	tests := []struct {
		name       string
		setup      func(t *testing.T) string
		wantHead   func(dir string) string // "" means ErrEmptyRepo
		wantBranch string                  // "" means an error saying HEAD is detached
	}{
		{"on trunk", richRepo, func(dir string) string { return git(t, dir, "rev-parse", "trunk") }, "trunk"},
		{"on feature", func(t *testing.T) string {
			dir := richRepo(t)
			git(t, dir, "checkout", "-q", "feature")
			return dir
		}, func(dir string) string { return git(t, dir, "rev-parse", "feature") }, "feature"},
		{"detached at a tag", func(t *testing.T) string {
			dir := richRepo(t)
			git(t, dir, "checkout", "-q", "v1")
			return dir
		}, func(dir string) string { return git(t, dir, "rev-parse", "v1^{commit}") }, ""},
		{"no commits", func(t *testing.T) string {
			dir := t.TempDir()
			git(t, dir, "init", "-q", "-b", "devel")
			return dir
		}, func(string) string { return "" }, "devel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.setup(t)
			g := GitRepo{Dir: dir}
			head, err := g.Head(ctx)
			if want := tt.wantHead(dir); want == "" {
				if !errors.Is(err, ErrEmptyRepo) {
					t.Errorf("Head = %q, %v; want ErrEmptyRepo", head, err)
				}
			} else if err != nil || head != want {
				t.Errorf("Head = %q, %v; want %s", head, err, want)
			}
			branch, err := g.CurrentBranch(ctx)
			if tt.wantBranch == "" {
				if err == nil || !strings.Contains(err.Error(), "HEAD is detached; check out a branch first") {
					t.Errorf("CurrentBranch = %q, %v; want the detached error", branch, err)
				}
			} else if err != nil || branch != tt.wantBranch {
				t.Errorf("CurrentBranch = %q, %v; want %s", branch, err, tt.wantBranch)
			}
		})
	}
}

// TestCloneOf_remotes: a clone's repository and remote are read from its
// remotes' menode URLs, whatever the remote is named.
func TestCloneOf_remotes(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	a, b := wire.RepoID{1}, wire.RepoID{2}
	tests := []struct {
		name       string
		remotes    [][2]string // name, URL
		wantID     wire.RepoID // zero: none
		wantRemote string      // of wantID
	}{
		{"repo clone", [][2]string{{"menode", RemoteURL(a)}}, a, "menode"},
		{"git clone menode::", [][2]string{{"origin", "menode::" + a.String()}}, a, "origin"},
		{"git clone menode://", [][2]string{{"origin", "menode://" + a.String() + "/"}}, a, "origin"},
		{"menode first", [][2]string{{"origin", RemoteURL(b)}, {"menode", RemoteURL(a)}}, a, "menode"},
		{"others ignored", [][2]string{{"github", "https://example.invalid/x.git"}, {"up", RemoteURL(b)}}, b, "up"},
		{"none", [][2]string{{"origin", "https://example.invalid/x.git"}}, wire.RepoID{}, ""},
		{"no remote", nil, wire.RepoID{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			git(t, dir, "init", "-q")
			for _, r := range tt.remotes {
				git(t, dir, "remote", "add", r[0], r[1])
			}
			id, err := CloneOf(ctx, dir)
			if tt.wantID == (wire.RepoID{}) {
				if err == nil {
					t.Fatalf("CloneOf = %s, want an error", id)
				}
				if _, err := (GitRepo{Dir: dir}).MenodeRemote(ctx, a); err == nil {
					t.Error("MenodeRemote found a remote")
				}
				return
			}
			if err != nil || id != tt.wantID {
				t.Fatalf("CloneOf = %s, %v; want %s", id, err, tt.wantID)
			}
			if remote, err := (GitRepo{Dir: dir}).MenodeRemote(ctx, tt.wantID); err != nil || remote != tt.wantRemote {
				t.Errorf("MenodeRemote = %q, %v; want %q", remote, err, tt.wantRemote)
			}
		})
	}
	t.Run("deleted clones", func(t *testing.T) {
		kept, gone := t.TempDir(), filepath.Join(t.TempDir(), "gone")
		git(t, kept, "init", "-q")
		if got := ExistingClones([]string{gone, kept}); !reflect.DeepEqual(got, []string{kept}) {
			t.Errorf("ExistingClones = %v, want [%s]", got, kept)
		}
	})
}
