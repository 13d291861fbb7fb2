package actors

import (
	"context"
	"slices"
	"testing"

	"github.com/menode/menode/wire"
)

// TestServedPieces_choose: a server that may choose sends the pieces it
// has sent least, every listed one once before any twice, and keeps the
// counts of a bounded number of bundles.
func TestServedPieces_choose(t *testing.T) {
	sp := newServedPieces()
	sha := [32]byte{1}
	const n = 12
	listed := []uint32{3, 5, 7, 9}
	if got := sp.choose(sha, n, listed, 0); !slices.Equal(got, listed) {
		t.Errorf("choose 0: %v, want all as listed", got)
	}
	seen := map[uint32]int{}
	for range 4 {
		got := sp.choose(sha, n, listed, 1)
		if len(got) != 1 || !slices.Contains(listed, got[0]) {
			t.Fatalf("choose 1 of %v: %v", listed, got)
		}
		seen[got[0]]++
	}
	if len(seen) != 4 {
		t.Errorf("four requests of one piece each got %v, want each listed piece once", seen)
	}
	// Piece 3 sent again (all listed: counted too), so 3 is sent twice,
	// 5 once, 11 never: least first.
	if got := sp.choose(sha, n, []uint32{3}, 1); !slices.Equal(got, []uint32{3}) {
		t.Errorf("choose 1 of [3]: %v", got)
	}
	for _, c := range []struct {
		listed []uint32
		want   uint32
	}{{[]uint32{3, 11}, 11}, {[]uint32{3, 5}, 5}} {
		if got := sp.choose(sha, n, c.listed, 1); !slices.Equal(got, []uint32{c.want}) {
			t.Errorf("choose 1 of %v: %v, want [%d]", c.listed, got, c.want)
		}
	}
	two := sp.choose(sha, n, []uint32{1, 3, 5}, 2)
	if len(two) != 2 || two[0] == two[1] || !slices.Contains(two, 1) {
		t.Errorf("choose 2 of [1 3 5] (sent 0, 2, 2 times): %v, want 1 and one other", two)
	}
	for i := range maxChooseBundles + 10 {
		sp.choose([32]byte{2, byte(i)}, 4, []uint32{0, 1}, 1)
	}
	if len(sp.by) > maxChooseBundles {
		t.Errorf("%d bundles counted, at most %d", len(sp.by), maxChooseBundles)
	}
	var nilSP *servedPieces
	if got := nilSP.choose(sha, 10, listed, 1); !slices.Equal(got, listed) {
		t.Errorf("nil: %v, want all as listed", got)
	}
}

// TestSwarmRun_partialHoldersTakeTurns: a partial holder offered while a
// swarm fetch has its most workers waits, and one working with nothing
// needed yields its place only when another waits.
func TestSwarmRun_partialHoldersTakeTurns(t *testing.T) {
	w := &swarmRun{sj: swarmJob{max: 1}, owner: make([]int, 4), present: map[wire.NodeID]bool{}}
	w.workers = 1 // the fetch has its one worker
	working := swarmSeeder{id: wire.NodeID{1}, partial: true}
	w.present[working.id] = true
	if w.yieldTo(working) {
		t.Error("a partial holder yields with nobody waiting")
	}
	other := swarmSeeder{id: wire.NodeID{2}, partial: true}
	ctx := context.Background()
	w.addSeeder(ctx, nil, other)
	w.addSeeder(ctx, nil, other)                           // offered twice: waits once
	w.addSeeder(ctx, nil, swarmSeeder{id: wire.NodeID{3}}) // a complete seeder does not wait
	if len(w.waiting) != 1 || w.waiting[0].id != other.id {
		t.Fatalf("waiting %v, want the other partial holder once", w.waiting)
	}
	if !w.yieldTo(working) {
		t.Error("a partial holder with nothing needed keeps its place while another waits")
	}
	if len(w.waiting) != 2 || w.waiting[1].id != working.id {
		t.Errorf("waiting %v, want the other, then the one that yielded", w.waiting)
	}
}
