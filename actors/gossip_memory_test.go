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

	"github.com/menode/menode/wire"
)

// heldFill is a Sybil fill as the hardening attack sends it: origins keys
// with perOrigin tiny RepoAnnouncements each (one branch, a made-up
// root), encoded as they arrive. The signatures are not real: hold does
// not verify (receive did, before it).
func heldFill(t testing.TB, origins, perOrigin int) [][]byte {
	t.Helper()
	now := time.Now().UnixMilli()
	out := make([][]byte, 0, origins*perOrigin)
	for range origins {
		pub, _, err := ed25519.GenerateKey(crand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		origin := wire.NodeIDFromKey(pub)
		for i := range perOrigin {
			root := make([]byte, 20)
			_, _ = crand.Read(root)
			commit := hex.EncodeToString(root)
			id, err := wire.NewRepoID(commit, origin)
			if err != nil {
				t.Fatal(err)
			}
			a := &wire.Announcement{Origin: origin.String(), Seq: uint64(now), TimestampMs: now + int64(i),
				Body: &wire.Announcement_Repo{Repo: &wire.RepoAnnouncement{
					RepoId: id.String(), RootCommit: commit, Name: "r" + commit[:8], DefaultBranch: "main",
					Refs: []*wire.Ref{{Name: "refs/heads/main", Commit: commit}},
				}}}
			payload, err := proto.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := proto.Marshal(&wire.SignedAnnouncement{Payload: payload, Signature: make([]byte, ed25519.SignatureSize)})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, raw)
		}
	}
	return out
}

// holdAll decodes each announcement as receive does and holds it, then
// builds the reconciliation index (a peer's first reconciliation does).
func holdAll(t testing.TB, g *gossip, raws [][]byte) {
	t.Helper()
	for _, raw := range raws {
		s := new(wire.SignedAnnouncement)
		if err := proto.Unmarshal(raw, s); err != nil {
			t.Fatal(err)
		}
		a := new(wire.Announcement)
		if err := proto.Unmarshal(s.Payload, a); err != nil {
			t.Fatal(err)
		}
		origin, err := wire.ParseNodeID(a.Origin)
		if err != nil {
			t.Fatal(err)
		}
		if !g.hold(nil, announcementKey(a, origin), s, a, origin) {
			t.Fatal("hold refused an announcement within the budgets")
		}
	}
	g.reconcileSet()
}

// heldHeap is the live heap gossip holds for raws, per announcement, and
// their mean encoded size.
func heldHeap(t testing.TB, raws [][]byte) (perEntry, encoded float64) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := wire.NodeIDFromKey(pub)
	g := newGossip(Config{MaxHeldBytes: 1 << 30, MaxHeldBytesPerOrigin: 1 << 30, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, key, id, nil, nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	holdAll(t, g, raws)
	g.dropStored() // the next gossip interval: the store has them
	runtime.GC()
	runtime.ReadMemStats(&after)
	if len(g.latest) != len(raws) {
		t.Fatalf("%d held, want %d", len(g.latest), len(raws))
	}
	runtime.KeepAlive(g)
	runtime.KeepAlive(raws)
	n := float64(len(raws))
	return float64(after.HeapAlloc-before.HeapAlloc) / n, float64(g.budget.sum) / n
}

// TestGossip_heldMemoryPerEntry: gossip keeps a held announcement as a
// small index entry, not decoded, and once the store has its bytes (the
// next gossip interval: dropStored) not those either: with 60,000 held
// from 10 origins the live heap per announcement is at most
// heldIndexBound. Decoded, as at first, it was 1,553 B for an
// announcement of 322 B encoded; encoded, 839 B; now about 520 B.
func TestGossip_heldMemoryPerEntry(t *testing.T) {
	const heldIndexBound = 640 // bytes per entry: keys, maps, the reconciliation set
	raws := heldFill(t, 10, 6000)
	perEntry, encoded := heldHeap(t, raws)
	t.Logf("%d held: %.0f B of heap per announcement of %.0f B encoded", len(raws), perEntry, encoded)
	if perEntry > heldIndexBound {
		t.Errorf("%.0f B of heap per held announcement of %.0f B: want at most %d", perEntry, encoded, heldIndexBound)
	}
}

// BenchmarkGossip_held reports the live heap per held announcement
// (go test -bench Gossip_held -run '^$' ./actors).
func BenchmarkGossip_held(b *testing.B) {
	raws := heldFill(b, 10, 6000)
	var perEntry, encoded float64
	for b.Loop() {
		perEntry, encoded = heldHeap(b, raws)
	}
	b.ReportMetric(perEntry, "heap-B/entry")
	b.ReportMetric(encoded, "encoded-B/entry")
}
