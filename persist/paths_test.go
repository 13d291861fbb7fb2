package persist

import (
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
