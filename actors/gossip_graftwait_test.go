package actors

import (
	"testing"
	"time"

	"github.com/menode/menode/wire"
)

// TestGraftWait_adapts: the wait starts at GraftTimeout, grows with late
// eager copies up to GraftTimeoutMax, and comes back down when they come
// in time again.
func TestGraftWait_adapts(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, time.Second
	w := newGraftWait(lo, hi)
	if got := w.wait(); got != lo {
		t.Fatalf("before any sample: %v, want %v", got, lo)
	}
	t0 := time.Now()
	// Grafted, then the eager copy 600 ms after the first IHave.
	for i := range 20 {
		id := [32]byte{byte(i)}
		w.grafting(id, t0)
		w.arrived(&missingMsg{grafted: 1, since: t0}, t0.Add(lo)) // the graft's answer: no sample
		w.duplicate(id, t0.Add(600*time.Millisecond))
	}
	if got := w.wait(); got < 600*time.Millisecond || got > hi {
		t.Errorf("after late eager copies: %v, want in [600ms, %v]", got, hi)
	}
	w.duplicate([32]byte{99}, t0.Add(time.Hour)) // never grafted: no sample
	for range 100 {
		w.arrived(&missingMsg{since: t0}, t0.Add(10*time.Millisecond)) // in time, no graft
	}
	if got := w.wait(); got != lo {
		t.Errorf("after eager copies in time: %v, want back at %v", got, lo)
	}
	for i := range 20 {
		w.sample(time.Duration(i+1) * time.Hour)
	}
	if got := w.wait(); got != hi {
		t.Errorf("after very late copies: %v, want the cap %v", got, hi)
	}
}

// TestGossip_graftWaitGrows: a message grafted from a lazy peer whose
// eager copy comes later makes gossip wait longer before the next graft
// (status graft_wait_ms).
func TestGossip_graftWaitGrows(t *testing.T) {
	t.Parallel()
	const lo = 20 * time.Millisecond
	h := startGossipWith(t, Config{GraftTimeout: lo, GraftTimeoutMax: 2 * time.Second})
	a, b := h.connect("A"), h.connect("B")
	h.repair(b, &wire.Frame{Body: &wire.Frame_Prune{Prune: &wire.Prune{}}})
	if got := h.stats().GraftWaitMs; got != lo.Milliseconds() {
		t.Fatalf("graft wait %d ms at the start, want %d", got, lo.Milliseconds())
	}
	creator := newSigner(t)
	s := creator.repo(t, commitID(300), 1, map[string]string{"refs/heads/main": commitID(301)})
	id := wire.AnnouncementID(s)
	h.repair(b, &wire.Frame{Body: &wire.Frame_Ihave{Ihave: &wire.IHave{Ids: [][]byte{id[:]}}}})
	b.waitFrameWhere("graft sent to B", hasID(s, false))
	h.deliver(b, s, defaultTTL) // the grafted copy
	h.waitFrame(a, s)           // relayed on: it was taken in
	h.deliver(a, s, 5)          // and the eager copy, late
	eventually(t, 5*time.Second, "the graft wait grows", func() bool {
		return h.stats().GraftWaitMs > lo.Milliseconds()
	})
}
