package actors

import (
	crand "crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"runtime"
	"testing"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

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
