package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// newMirror makes an empty mirror with HEAD at trunk in a fresh temp dir.
func newMirror(t *testing.T) GitRepo {
	t.Helper()
	m, err := InitMirror(context.Background(), filepath.Join(t.TempDir(), "repos", "m.git"), "trunk")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// refsOf lists every ref of dir (all namespaces) as name -> object ID.
func refsOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	refs := make(map[string]string)
	out := git(t, dir, "for-each-ref", "--format=%(refname) %(objectname)")
	for _, line := range strings.Split(out, "\n") {
		if name, id, ok := strings.Cut(line, " "); ok {
			refs[name] = id
		}
	}
	return refs
}

func TestInitMirror_behavior(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		setup   func(t *testing.T) string // returns the mirror path
		branch  string
		wantErr string
	}{
		{name: "new, parents created", branch: "trunk", setup: func(t *testing.T) string {
			return filepath.Join(t.TempDir(), "a", "b", "m.git")
		}},
		{name: "existing empty dir", branch: "main", setup: func(t *testing.T) string {
			return t.TempDir()
		}},
		{name: "again on an existing mirror", branch: "devel", setup: func(t *testing.T) string {
			dir := filepath.Join(t.TempDir(), "m.git")
			if _, err := InitMirror(ctx, dir, "trunk"); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{name: "dir holding something else", branch: "trunk", wantErr: "is not a bare git repository", setup: func(t *testing.T) string {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{name: "working repository", branch: "trunk", wantErr: "is not a bare git repository", setup: richRepo},
		{name: "bad branch", branch: "a..b", wantErr: `branch "a..b"`, setup: func(t *testing.T) string {
			return filepath.Join(t.TempDir(), "m.git")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.setup(t)
			m, err := InitMirror(ctx, dir, tt.branch)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("InitMirror = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if git(t, m.Dir, "rev-parse", "--is-bare-repository") != "true" {
				t.Error("mirror is not bare")
			}
			if got := git(t, m.Dir, "symbolic-ref", "HEAD"); got != "refs/heads/"+tt.branch {
				t.Errorf("HEAD = %s, want refs/heads/%s", got, tt.branch)
			}
			for _, kv := range mirrorConfig {
				if got := git(t, m.Dir, "config", "--get", kv[0]); got != kv[1] {
					t.Errorf("config %s = %q, want %q", kv[0], got, kv[1])
				}
			}
			info, err := os.Stat(filepath.Dir(m.Dir))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(tt.name, "parents") && info.Mode().Perm() != 0o700 {
				t.Errorf("parent mode = %v, want 0700", info.Mode().Perm())
			}
		})
	}
}

func TestGitRepo_MirrorFrom(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	src := richRepo(t)
	// Refs the mirror must not take: other namespaces, a tag of a tree.
	git(t, src, "update-ref", "refs/notes/commits", "HEAD")
	git(t, src, "update-ref", "refs/pull/1/head", "feature")
	git(t, src, "tag", "tree-tag", "HEAD^{tree}")
	m := newMirror(t)
	// Something already in the mirror that src does not have.
	git(t, m.Dir, "fetch", "-q", src, "refs/heads/feature:refs/heads/gone", "refs/heads/trunk:refs/remotes/x/trunk")

	steps := []struct {
		name   string
		change func()
	}{
		{"first copy", func() {}},
		{"branch moved, deleted, tag added", func() {
			commitFile(t, src, "d", "4")
			git(t, src, "branch", "-D", "feature")
			git(t, src, "tag", "-a", "-m", "two", "v2")
		}},
		{"branch forced back", func() { git(t, src, "reset", "-q", "--hard", "HEAD~2") }},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.change()
			want, err := GitRepo{Dir: src}.Refs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.MirrorFrom(ctx, src)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("MirrorFrom = %v\nwant %v", got, want)
			}
			if held := refsOf(t, m.Dir); !reflect.DeepEqual(held, want) {
				t.Errorf("mirror holds %v\nwant exactly %v", held, want)
			}
		})
	}
	t.Run("missing source", func(t *testing.T) {
		if _, err := m.MirrorFrom(ctx, filepath.Join(t.TempDir(), "nope")); err == nil {
			t.Error("MirrorFrom a missing directory succeeded")
		}
	})
}

func TestGitRepo_HaveObjects(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	dir := richRepo(t)
	g := GitRepo{Dir: dir}
	head := git(t, dir, "rev-parse", "HEAD")
	tag := git(t, dir, "rev-parse", "v1")
	blob := git(t, dir, "rev-parse", "HEAD:a")
	absent := strings.Repeat("0", 39) + "1"
	tests := []struct {
		name string
		ids  []string
		want []string
	}{
		{"none", nil, nil},
		{"all present, order kept", []string{tag, head, blob}, []string{tag, head, blob}},
		{"absent dropped", []string{absent, head}, []string{head}},
		{"duplicates once", []string{head, head}, []string{head}},
		{"not object IDs never held", []string{"HEAD", strings.ToUpper(head), head[:12], head + "\n" + tag, "--batch"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := g.HaveObjects(ctx, tt.ids)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("HaveObjects = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGitRepo_SetRefs(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	src := richRepo(t)
	trunk := git(t, src, "rev-parse", "trunk")
	feature := git(t, src, "rev-parse", "feature")
	v1 := git(t, src, "rev-parse", "v1")
	absent := strings.Repeat("0", 39) + "1"
	fresh := func(t *testing.T) GitRepo {
		m := newMirror(t)
		if _, err := m.MirrorFrom(ctx, src); err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, m GitRepo)
		refs    map[string]string
		branch  string
		wantErr error  // nil: success
		wantMsg string // part of the error
	}{
		{name: "replace everything", branch: "feature",
			refs: map[string]string{"refs/heads/feature": trunk, "refs/heads/new": feature, "refs/tags/v1": v1}},
		{name: "other namespaces and symrefs deleted", branch: "trunk",
			setup: func(t *testing.T, m GitRepo) {
				git(t, m.Dir, "update-ref", "refs/notes/x", trunk)
				git(t, m.Dir, "symbolic-ref", "refs/heads/alias", "refs/heads/trunk")
			},
			refs: map[string]string{"refs/heads/trunk": trunk}},
		{name: "branch becomes directory", branch: "trunk",
			refs: map[string]string{"refs/heads/trunk/x": trunk, "refs/heads/feature": feature}},
		{name: "directory becomes branch", branch: "a",
			setup: func(t *testing.T, m GitRepo) { git(t, m.Dir, "update-ref", "refs/heads/a/b", trunk) },
			refs:  map[string]string{"refs/heads/a": feature}},
		{name: "empty", branch: "trunk", refs: map[string]string{}},
		{name: "missing object", branch: "trunk", wantErr: ErrMissingObjects, wantMsg: "refs/heads/x names " + absent,
			refs: map[string]string{"refs/heads/trunk": trunk, "refs/heads/x": absent}},
		{name: "bad name", branch: "trunk", wantMsg: "refs/heads/a b",
			refs: map[string]string{"refs/heads/a b": trunk}},
		{name: "newline in name", branch: "trunk", wantMsg: "contains",
			refs: map[string]string{"refs/heads/a\ndelete refs/heads/trunk": trunk}},
		{name: "bad id", branch: "trunk", wantMsg: "not an object ID",
			refs: map[string]string{"refs/heads/trunk": "HEAD"}},
		{name: "bad branch", branch: "", wantMsg: `branch ""`,
			refs: map[string]string{"refs/heads/trunk": trunk}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := fresh(t)
			if tt.setup != nil {
				tt.setup(t, m)
			}
			before := refsOf(t, m.Dir)
			err := m.SetRefs(ctx, tt.refs, tt.branch)
			if tt.wantMsg != "" || tt.wantErr != nil {
				if err == nil || !strings.Contains(err.Error(), tt.wantMsg) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("SetRefs = %v, want error %v containing %q", err, tt.wantErr, tt.wantMsg)
				}
				if after := refsOf(t, m.Dir); !reflect.DeepEqual(after, before) {
					t.Errorf("refs changed on error:\n%v\nwas\n%v", after, before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := refsOf(t, m.Dir); !reflect.DeepEqual(got, tt.refs) {
				t.Errorf("mirror refs = %v\nwant %v", got, tt.refs)
			}
			if got := git(t, m.Dir, "symbolic-ref", "HEAD"); got != "refs/heads/"+tt.branch {
				t.Errorf("HEAD = %s, want refs/heads/%s", got, tt.branch)
			}
		})
	}
}

func TestGitRepo_MaybeRepack(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	src := richRepo(t)
	m := newMirror(t)
	packs := func() int {
		p, err := filepath.Glob(filepath.Join(m.Dir, "objects", "pack", "*.pack"))
		if err != nil {
			t.Fatal(err)
		}
		return len(p)
	}
	// Each fetch of more than a few objects keeps its pack (unpackLimit 1).
	git(t, m.Dir, "config", "fetch.unpackLimit", "1")
	for i := range 3 {
		commitFile(t, src, "f", strings.Repeat("x", i+1))
		if _, err := m.MirrorFrom(ctx, src); err != nil {
			t.Fatal(err)
		}
	}
	if packs() != 3 {
		t.Fatalf("setup: %d packs, want 3", packs())
	}
	want := refsOf(t, m.Dir)
	tests := []struct {
		name      string
		maxPacks  int
		wantPacks int
	}{
		{"at the limit: nothing", 3, 3},
		{"over the limit: one pack", 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := m.MaybeRepack(ctx, tt.maxPacks); err != nil {
				t.Fatal(err)
			}
			if got := packs(); got != tt.wantPacks {
				t.Errorf("%d packs, want %d", got, tt.wantPacks)
			}
			if got := refsOf(t, m.Dir); !reflect.DeepEqual(got, want) {
				t.Errorf("refs changed: %v", got)
			}
			git(t, m.Dir, "fsck", "--no-dangling")
		})
	}
}

func TestDiskSize_behavior(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]int
		want  int64
	}{
		{"empty", nil, 0},
		{"nested", map[string]int{"a": 10, "d/b": 100, "d/e/c": 1000}, 1110},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, size := range tt.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// A symlink is not counted as the file it points to.
			if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			got, err := DiskSize(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("DiskSize = %d, want %d", got, tt.want)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		if _, err := DiskSize(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("err = %v, want ErrNotExist", err)
		}
	})
}

// TestDiskUsage_countsBlocks: a hundred 41-byte files (loose refs) take a
// block each on disk, far more than their 4100 bytes, and DiskUsage says so.
func TestDiskUsage_countsBlocks(t *testing.T) {
	dir := t.TempDir()
	for i := range 100 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("ref%d", i)), make([]byte, 41), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	size, err := DiskSize(dir)
	if err != nil {
		t.Fatal(err)
	}
	used, err := DiskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if size != 4100 || used < 100*512 {
		t.Errorf("DiskSize %d (want 4100), DiskUsage %d (want at least a 512-byte block per file)", size, used)
	}
}
