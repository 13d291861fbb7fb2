package actors

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/wire"
)

// TestHardening3_sybilFillLeavesRoom (hardening finding 3): tiny
// announcements from a handful of fresh keys used to fill a global slot cap,
// after which no new repository or node was ever learned (and every drop
// wrote a WARN line). Budgets are in bytes, per origin and in total, and
// the origin holding the most pays: an honest newcomer is still learned.
func TestHardening3_sybilFillLeavesRoom(t *testing.T) {
	t.Parallel()
	const total, perOrigin = 64 << 10, 16 << 10
	h := startGossipWith(t, Config{MaxHeldBytes: total, MaxHeldBytesPerOrigin: perOrigin})
	attacker, victim := h.connect("attacker"), h.connect("victim")
	var last *wire.SignedAnnouncement
	for k := range 10 {
		sybil := newSigner(t)
		for i := range 150 { // ~37 KB per key: over its own budget, and 6x the total together
			last = sybil.repo(t, commitID(100000*k+i), 1, nil)
			h.send(&gossipIn{From: attacker.id, Gossip: &wire.Gossip{Announcement: last, Ttl: 0}})
		}
	}
	eventually(t, 10*time.Second, "the flood is handled", func() bool { return len(h.saved(last)) == 1 })
	honest := newSigner(t)
	repo := honest.repo(t, commitID(7), 1, map[string]string{"refs/heads/main": commitID(8)})
	h.deliver(victim, repo, 3)
	h.waitLearned(honest.repoID(t, commitID(7)))
	node := honest.sign(t, &wire.Announcement{Seq: 1, TimestampMs: time.Now().UnixMilli(),
		Body: &wire.Announcement_Node{Node: &wire.NodeAnnouncement{Alias: "honest"}}})
	h.deliver(victim, node, 3)
	h.waitFrame(attacker, node)
	st := h.stats()
	if st.HeldBytes > total {
		t.Errorf("holding %d bytes, budget %d", st.HeldBytes, total)
	}
	if st.Dropped[dropEvicted] == 0 {
		t.Errorf("nothing evicted: %+v", st)
	}
	t.Logf("held %d announcements, %d bytes; dropped %v", st.Held, st.HeldBytes, st.Dropped)
}

// TestHardening2_largeAnnouncementsStayWithinBudget (hardening finding 2):
// 200 distinct ~1 MiB repository announcements took 1.86 GB of memory, a
// 430 MB database, and three new connections pulled 582 MiB of catch-up.
// Announcements are at most 512 KiB now; what is held stays within the
// byte budgets, evicted ones leave the store, and catch-up is bounded.
func TestHardening2_largeAnnouncementsStayWithinBudget(t *testing.T) {
	t.Parallel()
	const total, catchUp = 1 << 20, 512 << 10
	h := startGossipWith(t, Config{MaxHeldBytes: total, MaxHeldBytesPerOrigin: 256 << 10, MaxCatchUpBytes: catchUp})
	a := h.connect("A")
	refs := map[string]string{}
	for i := range 2500 { // ~150 KB encoded
		refs[fmt.Sprintf("refs/tags/t%05d", i)] = commitID(i)
	}
	var last *wire.SignedAnnouncement
	for k := range 16 {
		last = newSigner(t).repo(t, commitID(k), 1, refs)
		h.send(&gossipIn{From: a.id, Gossip: &wire.Gossip{Announcement: last, Ttl: 0}})
	}
	eventually(t, 20*time.Second, "the announcements are handled", func() bool { return len(h.saved(last)) == 1 })
	st := h.stats()
	if st.HeldBytes > total {
		t.Errorf("holding %d bytes, budget %d", st.HeldBytes, total)
	}
	deleted := 0
	for _, m := range h.store.all() {
		if _, ok := m.(*deleteAnnouncement); ok {
			deleted++
		}
	}
	if deleted == 0 || int64(deleted) != st.Dropped[dropEvicted] {
		t.Errorf("%d evicted, %d deleted from the store", st.Dropped[dropEvicted], deleted)
	}
	newcomer := h.connect("newcomer")
	// A hostile newcomer asks for everything three times: the budget is
	// per peer and refills over a minute, not per request.
	for range 3 {
		h.catchUp(newcomer)
	}
	var got int
	eventually(t, 10*time.Second, "catch-up sent", func() bool {
		got = 0
		for _, f := range newcomer.gossipFrames() {
			got += proto.Size(f.Announcement)
		}
		return got > 0
	})
	if got > catchUp {
		t.Errorf("catch-up of %d bytes, budget %d", got, catchUp)
	}
	t.Logf("held %d bytes in %d slots; catch-up %d bytes", st.HeldBytes, st.Held, got)
}
