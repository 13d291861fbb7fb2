package actors

import (
	"fmt"
	"testing"
	"time"

	"github.com/menode/menode/wire"
)

// TestGossip_storeBacklogHoldsCredits: while the store has not answered
// maxStoreBarriers barriers (it is that far behind gossip's writes),
// gossip keeps the frame credits of what it handles, so the peer's reader
// waits; once the store answers, every credit kept is given back. Nothing
// is dropped meanwhile: every announcement is held and sent to the store.
func TestGossip_storeBacklogHoldsCredits(t *testing.T) {
	h := startGossip(t)
	h.barrierMu.Lock()
	h.holdBarriers = true
	h.barrierMu.Unlock()
	p := h.connect("flood")
	s := newSigner(t)
	// The last of the first ahead announcements asks for the barrier
	// that puts the store behind: its own credit is kept already.
	ahead := maxStoreBarriers*storeBarrierEvery - 1
	n := ahead + 11
	credits := make([]chan struct{}, n)
	for i := range n {
		root := fmt.Sprintf("%040x", i+1)
		credits[i] = make(chan struct{}, 1)
		credits[i] <- struct{}{} // the reader's credit for this frame
		h.send(&gossipIn{From: p.id, Gossip: &wire.Gossip{Announcement: s.repo(t, root, 1, map[string]string{"refs/heads/main": root})}, credit: credits[i]})
	}
	released := func(from, to int) int {
		k := 0
		for _, c := range credits[from:to] {
			if len(c) == 0 {
				k++
			}
		}
		return k
	}
	eventually(t, 30*time.Second, "the store is sent every announcement", func() bool { return len(h.learned()) == n })
	if got := released(0, ahead); got != ahead {
		t.Errorf("%d of the first %d credits given back, want all: the store was not behind yet", got, ahead)
	}
	if got := released(ahead, n); got != 0 {
		t.Errorf("%d credits given back while the store was %d barriers behind, want 0", got, maxStoreBarriers)
	}
	h.barrierMu.Lock()
	waiting := h.barriers
	h.barriers, h.holdBarriers = nil, false
	h.barrierMu.Unlock()
	if len(waiting) != maxStoreBarriers {
		t.Fatalf("gossip asked for %d barriers, want %d", len(waiting), maxStoreBarriers)
	}
	for _, pid := range waiting {
		h.system.Root.Send(pid, true)
	}
	eventually(t, 5*time.Second, "every credit kept is given back", func() bool { return released(0, n) == n })
	st, err := h.system.Root.RequestFuture(h.gossip, &gossipStats{}, 5*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	stats := st.(GossipStats)
	if stats.StoreWaits != int64(n-ahead) {
		t.Errorf("status counts %d frames that waited for the store, want %d", stats.StoreWaits, n-ahead)
	}
	if len(stats.Dropped) != 0 {
		t.Errorf("dropped %v, want nothing", stats.Dropped)
	}
}
