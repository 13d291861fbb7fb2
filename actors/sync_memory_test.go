package actors

import (
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// learnedStore fills the store under root as gossip leaves it after it
// learned origins x perOrigin repositories from their creators: each
// creator's signed RepoAnnouncement under its slot, and the learned
// repository record. It returns how many it wrote.
func learnedStore(t testing.TB, root string, origins, perOrigin int) int {
	t.Helper()
	db, err := persist.OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().Add(-time.Hour).UnixMilli()
	for range origins {
		pub, key, err := ed25519.GenerateKey(crand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		origin := wire.NodeIDFromKey(pub)
		err = db.Group(func(g *persist.Store) {
			for i := range perOrigin {
				root := make([]byte, 20)
				_, _ = crand.Read(root)
				commit := hex.EncodeToString(root)
				id, err := wire.NewRepoID(commit, origin)
				if err != nil {
					t.Error(err)
					return
				}
				a := &wire.Announcement{Origin: origin.String(), Seq: uint64(now + int64(i)), TimestampMs: now + int64(i),
					Body: &wire.Announcement_Repo{Repo: &wire.RepoAnnouncement{
						RepoId: id.String(), RootCommit: commit, Name: "r" + commit[:8], DefaultBranch: "main",
						Refs: []*wire.Ref{{Name: "refs/heads/main", Commit: commit}},
					}}}
				s, err := wire.SignAnnouncement(key, a)
				if err != nil {
					t.Error(err)
					return
				}
				raw, err := proto.Marshal(s)
				if err != nil {
					t.Error(err)
					return
				}
				if err := g.PutAnnouncement(slotKey(kindRepo, origin, id.String()), a.Seq, raw); err != nil {
					t.Error(err)
					return
				}
				repo := persist.Repo{ID: id, Name: "r" + commit[:8], Creator: origin, RootCommit: commit, DefaultBranch: "main",
					Refs: map[string]string{"refs/heads/main": commit}, Seq: a.Seq, UpdatedAt: time.UnixMilli(a.TimestampMs).UTC()}
				if err := learnRepoIn(g, repo); err != nil {
					t.Error(err)
					return
				}
			}
		})
		if err != nil || t.Failed() {
			t.Fatalf("fill the store: %v", err)
		}
	}
	return origins * perOrigin
}

// liveHeap is the live heap after two collections.
func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestSync_learnedMemoryPerRepo: sync keeps a repository it knows only
// from gossip in a few words (creator, seq, refs hash), not its decoded
// record: 50,000 announced cost at most learnedRepoBound bytes of live
// heap each. Decoded, as before, they took about 750 B each.
func TestSync_learnedMemoryPerRepo(t *testing.T) {
	const learnedRepoBound = 250
	const n = 50_000
	s := newSyncer(Config{Root: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}.withDefaults(), nil, nil)
	defer s.stopWork()
	creator := wire.NodeID{7}
	repos := make([]persist.Repo, n)
	for i := range repos {
		var id wire.RepoID
		_, _ = crand.Read(id[:])
		commit := hex.EncodeToString(id[:20])
		repos[i] = persist.Repo{ID: id, Name: "r" + commit[:8], Creator: creator, RootCommit: commit, DefaultBranch: "main",
			Refs: map[string]string{"refs/heads/main": commit}, Seq: uint64(i + 1)}
	}
	before := liveHeap()
	for _, r := range repos {
		s.announced(r)
	}
	per := (float64(liveHeap()) - float64(before)) / n
	runtime.KeepAlive(s)
	runtime.KeepAlive(repos) // alive in both readings: only what sync keeps counts
	t.Logf("%d learned repositories: %.0f B of live heap each in sync", n, per)
	if len(s.learned) != n {
		t.Fatalf("sync knows %d as learned, want %d", len(s.learned), n)
	}
	if per > learnedRepoBound {
		t.Errorf("%.0f B of live heap per learned repository in sync, want at most %d", per, learnedRepoBound)
	}
}
