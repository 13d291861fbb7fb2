package actors

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
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

// The hardening tests: a hostile seeder or fetcher played by the test
// against a real node, each named for the hole it closes.

// TestTransferHardening_refusedFetchLeavesNoPack: a seeder serves a valid
// pack of junk (blobs nobody signed, no heads): the victim refuses it
// (the signed objects are missing) and blames the seeder, 20 times over,
// and its mirror directory and tmp/ are then byte for byte what they were
// before: no pack kept, and no mirror directory when there was none.
func TestTransferHardening_refusedFetchLeavesNoPack(t *testing.T) {
	t.Parallel()
	fx := newTransferFixture(t)
	for _, prior := range []bool{false, true} {
		name := "no mirror before"
		if prior {
			name = "a mirror at an older state"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := newTransferWorldWith(t, fx, func(c *Config) {
				c.SyncInterval, c.SyncBackoff, c.SyncBackoffMax = 20*time.Millisecond, time.Millisecond, 10*time.Millisecond
			})
			want := w.state(t, 1, w.base)
			if prior {
				p := startFakeSeeder(t, w, newSigner(t), w.serve(t, w.base, want.ann, nil))
				p.gossip(t, want.ann)
				p.announceInventory(t, w.id, w.base)
				waitSynced(t, w.victim, w.id, w.base, 20*time.Second)
				next := copyRefs(w.base)
				next["refs/heads/main"] = w.commit(t, "two.txt", "two\n")
				want = w.state(t, 2, next)
			}
			mirror, tmp := persist.MirrorPath(w.vroot, w.id), persist.TmpDir(w.vroot)
			mirrorBefore, tmpBefore := snapshotTree(t, mirror), snapshotTree(t, tmp)

			bad := startFakeSeeder(t, w, newSigner(t), junkPack(t, want.ann))
			bad.gossip(t, want.ann)
			bad.announceInventory(t, w.id, want.refs)
			const rounds = 20
			eventually(t, 60*time.Second, fmt.Sprintf("%d refused fetches from the junk seeder", rounds), func() bool {
				return w.countLog("sync: fetch failed", bad.id) >= rounds
			})
			_ = bad.conn.CloseWithError(0, "enough")
			eventually(t, 10*time.Second, "no fetch in flight", func() bool { return status(t, w.victim).Fetching == 0 })
			for _, line := range w.logLines("sync: fetch failed", bad.id)[:rounds] { // not the one the hang-up cut
				if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "which the mirror does not hold") {
					t.Errorf("a junk fetch that is not refused for the missing signed objects, blamed: %s", line)
					break
				}
			}
			if !prior {
				if _, err := os.Stat(mirror); !os.IsNotExist(err) {
					t.Errorf("the refused fetches left a mirror directory (stat: %v)", err)
				}
			}
			assertSameTree(t, "the mirror", mirrorBefore, snapshotTree(t, mirror))
			assertSameTree(t, "tmp/", tmpBefore, snapshotTree(t, tmp))
		})
	}
}

// junkPack serves a bundle without heads whose pack is valid: three
// random blobs, announced with ann.
func junkPack(t *testing.T, ann *wire.SignedAnnouncement) serveFunc {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "junk.git")
	gitT(t, filepath.Dir(dir), "init", "-q", "--bare", dir)
	var ids []string
	rng := rand.New(rand.NewPCG(7, 8))
	for range 3 {
		blob := make([]byte, 64<<10)
		for i := range blob {
			blob[i] = byte(rng.Uint32())
		}
		ids = append(ids, gitInput(t, dir, string(blob), "hash-object", "-w", "--stdin"))
	}
	cmd := exec.Command("git", "-C", dir, "pack-objects", "-q", "--stdout")
	cmd.Stdin = strings.NewReader(strings.Join(ids, "\n") + "\n")
	pack, err := cmd.Output()
	if err != nil {
		t.Fatalf("git pack-objects: %v", err)
	}
	data := append([]byte("# v2 git bundle\n\n"), pack...)
	sum := sha256.Sum256(data)
	return func(*wire.TransferRequest) ([]byte, error) {
		r := &transferReply{
			start: &wire.TransferStart{BundleId: sum[:], Size: uint64(len(data))},
			ann:   ann, data: data,
			done: &wire.TransferDone{Size: uint64(len(data)), Sha256: sum[:]},
		}
		return r.encode()
	}
}

// snapshotTree maps each path under dir to its type, size and content
// hash; a missing dir is an empty map, as an empty one is.
func snapshotTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			out[rel] = "dir"
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		out[rel] = fmt.Sprintf("%d %s", len(data), hex.EncodeToString(sum[:8]))
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return out
}

func assertSameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, v := range after {
		if before[p] != v {
			t.Errorf("%s: %s is %q, was %q", what, p, v, before[p])
		}
	}
	for p, v := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s: %s (%s) is gone", what, p, v)
		}
	}
}

// logLines returns the victim's log lines with msg naming peer.
func (w *transferWorld) logLines(msg string, peer wire.NodeID) []string {
	var out []string
	for _, line := range strings.Split(w.logs.String(), "\n") {
		if strings.Contains(line, fmt.Sprintf("msg=%q", msg)) && strings.Contains(line, "peer="+peer.String()+" ") {
			out = append(out, line)
		}
	}
	return out
}

func (w *transferWorld) countLog(msg string, peer wire.NodeID) int {
	return len(w.logLines(msg, peer))
}
