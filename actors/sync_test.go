package actors

import (
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// These tests run whole nodes in process on loopback QUIC, with real git
// and real bbolt files in temp dirs.

// startSyncNode starts a node with short sync timers; tweak adjusts its config.
func startSyncNode(t *testing.T, alias string, tweak func(*Config), boot ...Bootstrap) (*Node, string, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cfg := Config{
		Root: t.TempDir(), Addr: "127.0.0.1:0", Alias: alias, Bootstrap: boot,
		WatchInterval: 100 * time.Millisecond, SyncInterval: 500 * time.Millisecond,
		SyncBackoff: 100 * time.Millisecond,
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	n, err := Start(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", alias, err)
	}
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			t.Logf("log of %s:\n%s", alias, logs.String())
		}
	})
	s := status(t, n)
	return n, s.Listen[0], logs
}

// gitT runs git in dir with a fixed identity and returns its trimmed output.
func gitT(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func repoView(t *testing.T, n *Node, id wire.RepoID) (RepoView, bool) {
	t.Helper()
	res, err := n.Request(&ShowRepo{ID: id})
	if err != nil {
		return RepoView{}, false
	}
	return res.(RepoView), true
}

func waitSynced(t *testing.T, n *Node, id wire.RepoID, refs map[string]string, within time.Duration) {
	t.Helper()
	eventually(t, within, "mirror synced", func() bool {
		v, ok := repoView(t, n, id)
		return ok && v.Status == StatusSynced && maps.Equal(v.MirrorRefs, refs)
	})
}

// TestSync_incrementalUpdate: after a first sync of a repository with over
// 5 MB of history and 20 annotated tags, a one-commit update moves less
// than 5 % of the full bundle's bytes.
func TestSync_incrementalUpdate(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src")
	gitT(t, filepath.Dir(src), "init", "-q", "-b", "main", src)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		blob := make([]byte, 300<<10)
		for j := range blob {
			blob[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d.bin", i)), blob, 0o644); err != nil {
			t.Fatal(err)
		}
		gitT(t, src, "add", ".")
		gitT(t, src, "commit", "-q", "-m", fmt.Sprintf("commit %d", i))
		gitT(t, src, "tag", "-a", "-m", "release", fmt.Sprintf("v%d", i))
	}
	gitT(t, src, "branch", "side", "HEAD~3")

	n1, addr1, _ := startSyncNode(t, "n1", nil)
	n2, _, _ := startSyncNode(t, "n2", nil, Bootstrap{ID: n1.ID, Addr: addr1})
	res, err := n1.Request(&AddRepo{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	id := res.(RepoView).ID
	waitSynced(t, n2, id, res.(RepoView).Refs, 30*time.Second)
	first := status(t, n2).BytesReceived
	if first < 5<<20 {
		t.Fatalf("first sync received %d bytes; the test needs over 5 MB of history", first)
	}

	if err := os.WriteFile(filepath.Join(src, "f00.bin"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitT(t, src, "commit", "-q", "-am", "one more")
	head := gitT(t, src, "rev-parse", "HEAD")
	eventually(t, 30*time.Second, "the update reaches n2's mirror", func() bool {
		v, ok := repoView(t, n2, id)
		return ok && v.Status == StatusSynced && v.MirrorRefs["refs/heads/main"] == head
	})
	second := status(t, n2).BytesReceived - first
	t.Logf("first sync %d bytes, update %d bytes (%.2f %%)", first, second, 100*float64(second)/float64(first))
	if second <= 0 || second*20 >= first {
		t.Errorf("update moved %d bytes, want over 0 and under 5 %% of %d", second, first)
	}
	mirror := filepath.Join(status(t, n2).Root, "repos", id.String()+".git")
	gitT(t, mirror, "fsck", "--strict")
}

// TestHardening_mirrorQuota: one creator must not fill every node's disk.
// With a mirror quota of 50 MB, a creator's 200 MB repository is refused
// (visibly, in the repository's view and the log), the mirrors stay within
// the quota, nothing half-received is left, and a small repository still
// syncs.
func TestHardening_mirrorQuota(t *testing.T) {
	t.Parallel()
	const quota = 50_000_000
	big, small := filepath.Join(t.TempDir(), "big"), filepath.Join(t.TempDir(), "small")
	for _, dir := range []string{big, small} {
		gitT(t, filepath.Dir(dir), "init", "-q", "-b", "main", dir)
	}
	blob := make([]byte, 200_000_000) // random: git cannot compress it
	_, _ = rand.NewChaCha8([32]byte{3, 4}).Read(blob)
	if err := os.WriteFile(filepath.Join(big, "big.bin"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	gitT(t, big, "add", ".")
	gitT(t, big, "commit", "-q", "-m", "big")
	gitT(t, small, "commit", "-q", "--allow-empty", "-m", "small")

	n1, addr1, _ := startSyncNode(t, "n1", nil)
	n2, _, logs := startSyncNode(t, "n2", func(c *Config) { c.MirrorQuota = quota }, Bootstrap{ID: n1.ID, Addr: addr1})
	add := func(path string) RepoView {
		res, err := n1.Request(&AddRepo{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		return res.(RepoView)
	}
	bigView := add(big)
	eventually(t, 2*time.Minute, "the big repository is refused", func() bool {
		v, ok := repoView(t, n2, bigView.ID)
		return ok && strings.Contains(v.SyncError, "quota")
	})
	smallView := add(small)
	waitSynced(t, n2, smallView.ID, smallView.Refs, 30*time.Second)
	v, _ := repoView(t, n2, bigView.ID)
	if v.Status != StatusMissing {
		t.Errorf("big repository status %s, want missing", v.Status)
	}
	root := status(t, n2).Root
	used, err := persist.DiskSize(filepath.Join(root, "repos"))
	if err != nil {
		t.Fatal(err)
	}
	if used > quota {
		t.Errorf("mirrors take %d bytes, quota %d", used, quota)
	}
	if _, err := os.Stat(persist.PartPath(root, bigView.ID)); !os.IsNotExist(err) {
		t.Errorf("a half-received bundle is left: %v", err)
	}
	if !strings.Contains(logs.String(), "repository refused") {
		t.Error("the refusal is not in the log")
	}
}
