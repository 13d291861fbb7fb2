package actors

import (
	"slices"
	"testing"
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
