package persist

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/menode/menode/wire"
)

func TestPaths_layout(t *testing.T) {
	root := filepath.Join("/srv", "menode")
	id := testRepoID(t, "1111111111111111111111111111111111111111")
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"key", KeyPath(root), "/srv/menode/identity.key"},
		{"db", DBPath(root), "/srv/menode/megaengine.db"},
		{"socket", SocketPath(root), "/srv/menode/menode.sock"},
		{"mirror", MirrorPath(root, id), "/srv/menode/repos/" + id.String() + ".git"},
		{"cache", CacheDir(root), "/srv/menode/cache"},
		{"cached bundle", CachedBundlePath(root, id, BundleKey{0xab}), "/srv/menode/cache/" + id.String() + "-ab" + strings.Repeat("0", 62) + ".bundle"},
		{"tmp", TmpDir(root), "/srv/menode/tmp"},
		{"part", PartPath(root, id), "/srv/menode/tmp/" + id.String() + ".part"},
		{"incoming", IncomingPath(root, id), "/srv/menode/tmp/" + id.String() + ".incoming.git"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
	t.Run("mirror stays in repos", func(t *testing.T) {
		p := MirrorPath(root, id)
		if filepath.Dir(p) != filepath.Join(root, "repos") || !strings.HasPrefix(filepath.Base(p), "did:repo:z") {
			t.Errorf("MirrorPath = %q, want a did:repo file directly under %s/repos", p, root)
		}
	})
}

func TestEnsureRoot_behavior(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T) string
		wantErr bool
	}{
		{"creates nested", func(t *testing.T) string { return filepath.Join(t.TempDir(), "a", "b") }, false},
		{"existing dir", func(t *testing.T) string { return t.TempDir() }, false},
		{"path is a file", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := tt.setup(t)
			err := EnsureRoot(root)
			if (err != nil) != tt.wantErr {
				t.Fatalf("EnsureRoot(%s) error = %v, wantErr %v", root, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			info, err := os.Stat(root)
			if err != nil || !info.IsDir() {
				t.Fatalf("root %s not a directory after EnsureRoot: %v", root, err)
			}
		})
	}
	t.Run("new root is private", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "fresh")
		if err := EnsureRoot(root); err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(root)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("root mode = %04o, want no group/other bits", perm)
		}
	})
}

// testRepoID derives a RepoID from a made-up root commit and a fixed creator.
func testRepoID(t *testing.T, rootCommit string) wire.RepoID {
	t.Helper()
	var creator wire.NodeID
	creator[0] = 1
	id, err := wire.NewRepoID(rootCommit, creator)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Finding 8: a local repository path holding an escape sequence was printed
// raw in an error. Errors that name a path quote it when it is not plain
// printable text.
func TestHardening8_escapedPathInError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "evil\x1b[2J\u202ename")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"not a git repository", func() error { _, err := OpenGitRepo(context.Background(), dir); return err }},
		{"missing", func() error { _, err := OpenGitRepo(context.Background(), filepath.Join(dir, "gone")); return err }},
		{"key file", func() error { _, err := LoadIdentity(filepath.Join(dir, "identity.key")); return err }},
		{"clone into a file", func() error {
			file := filepath.Join(dir, "file")
			if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			return CloneMirror(context.Background(), dir, file, "menode", "main", "")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatal("no error")
			}
			if strings.ContainsAny(err.Error(), "\x1b\u202e") {
				t.Errorf("error holds the raw path: %q", err)
			}
			if !strings.Contains(err.Error(), `evil\x1b[2J\u202ename`) {
				t.Errorf("error %q does not name the path, quoted", err)
			}
		})
	}
}

func TestQuotePath_behavior(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/home/me/src/menode", "/home/me/src/menode"},
		{"/home/me/my project", "/home/me/my project"},
		{"/home/me/проект/仓库", "/home/me/проект/仓库"},
		{"/tmp/a\x1b[31mb", `"/tmp/a\x1b[31mb"`},
		{"/tmp/a\u202eb", `"/tmp/a\u202eb"`},
		{"/tmp/a\nb", `"/tmp/a\nb"`},
		{"/tmp/a\xffb", `"/tmp/a\xffb"`},
		{`/tmp/a"b`, `"/tmp/a\"b"`},
	}
	for _, tt := range tests {
		if got := QuotePath(tt.in); got != tt.want {
			t.Errorf("QuotePath(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
