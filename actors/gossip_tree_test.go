package actors

import (
	"fmt"
	"testing"
	"time"

	"github.com/menode/menode/wire"
)

// TestGossip_tree: eager push along a tree, message IDs to the rest, and
// the repairs (PROTOCOL.md section 6, "Propagation").
func TestGossip_tree(t *testing.T) {
	t.Parallel()
	creator := newSigner(t)
	repo := func(n int) *wire.SignedAnnouncement {
		return creator.repo(t, commitID(200+n), 1, map[string]string{"refs/heads/main": commitID(n)})
	}

	t.Run("a duplicate along the tree prunes the link; the pruned peer gets IDs and can graft", func(t *testing.T) {
		t.Parallel()
		h := startGossip(t)
		a, b, c := h.connect("A"), h.connect("B"), h.connect("C")
		s1, s2, s3 := repo(1), repo(2), repo(3)
		h.deliver(a, s1, 5)
		h.waitFrame(b, s1)
		h.deliver(b, s1, 5) // B's copy closes a loop
		b.waitFrameWhere("prune sent to B", isPrune)
		h.deliver(a, s2, 5)
		h.waitFrame(c, s2)
		b.waitFrameWhere("B gets s2's ID", hasID(s2, true))
		if n := len(b.framesOf(s2)); n != 0 {
			t.Errorf("pruned B got s2 whole %d times", n)
		}
		// B grafts: it gets s2 at full TTL, and the link is eager again.
		id := wire.AnnouncementID(s2)
		h.repair(b, &wire.Frame{Body: &wire.Frame_Graft{Graft: &wire.Graft{Ids: [][]byte{id[:]}}}})
		if got := h.waitFrame(b, s2); got.Ttl != defaultTTL {
			t.Errorf("grafted copy has TTL %d, want %d", got.Ttl, defaultTTL)
		}
		h.deliver(a, s3, 5)
		h.waitFrame(b, s3)
		if n := a.count(isPrune) + c.count(isPrune); n != 0 {
			t.Errorf("%d prunes sent to A or C, which sent no duplicate", n)
		}
		if st := h.stats(); st.EagerPeers != 3 {
			t.Errorf("eager peers %d, want 3", st.EagerPeers)
		}
	})

	t.Run("an announced message that does not come is grafted from the next announcer", func(t *testing.T) {
		t.Parallel()
		h := startGossipWith(t, Config{GraftTimeout: 100 * time.Millisecond})
		a, b := h.connect("A"), h.connect("B")
		h.repair(a, &wire.Frame{Body: &wire.Frame_Prune{Prune: &wire.Prune{}}})
		h.repair(b, &wire.Frame{Body: &wire.Frame_Prune{Prune: &wire.Prune{}}})
		arrives, lost := repo(10), repo(11)
		ihave := func(p *fakePeer, s *wire.SignedAnnouncement) {
			id := wire.AnnouncementID(s)
			h.repair(p, &wire.Frame{Body: &wire.Frame_Ihave{Ihave: &wire.IHave{Ids: [][]byte{id[:]}}}})
		}
		ihave(a, arrives)
		h.deliver(a, arrives, 3) // in time: no graft
		ihave(a, lost)
		ihave(b, lost)
		a.waitFrameWhere("graft of the lost message sent to A", hasID(lost, false))
		b.waitFrameWhere("then to B", hasID(lost, false))
		if n := a.count(hasID(arrives, false)); n != 0 {
			t.Errorf("graft sent for a message that arrived (%d)", n)
		}
		// Grafting made both links eager again.
		s := repo(12)
		h.deliver(a, s, 5)
		h.waitFrame(b, s)
	})

	t.Run("malformed repair frames close the connection", func(t *testing.T) {
		t.Parallel()
		h := startGossip(t)
		for name, f := range map[string]*wire.Frame{
			"ihave with a short id":       {Body: &wire.Frame_Ihave{Ihave: &wire.IHave{Ids: [][]byte{{1, 2, 3}}}}},
			"empty graft":                 {Body: &wire.Frame_Graft{Graft: &wire.Graft{}}},
			"reconcile with a long bound": {Body: &wire.Frame_Reconcile{Reconcile: &wire.Reconcile{Ranges: []*wire.ReconcileRange{{Upper: make([]byte, 40)}}}}},
		} {
			p := h.connect(name)
			h.repair(p, f)
			got := p.waitFrameWhere(name+": peer closed", func(m any) bool { _, ok := m.(*closePeer); return ok })
			if c := got.(*closePeer); c.Code != wire.ErrorCode_ERROR_PROTOCOL {
				t.Errorf("%s: closed with %v, want ERROR_PROTOCOL", name, c.Code)
			}
		}
	})

	t.Run("reconciliation steps past the rate are not answered", func(t *testing.T) {
		t.Parallel()
		h := startGossip(t)
		p := h.connect("greedy")
		start := reconcileFrame(wire.NewReconcileSet([]wire.SlotItem{{Seq: 1}}).Start())
		for range reconcileBurst + 40 {
			h.repair(p, start)
		}
		st := h.stats()
		// The clock runs meanwhile: a few more than the burst may be answered.
		if got := st.Dropped[dropReconcile]; got < 1 || got > 40 {
			t.Errorf("dropped %d steps over the rate, want about 40", got)
		}
	})

	t.Run("reconciliation sends only what the peer lacks or holds older", func(t *testing.T) {
		t.Parallel()
		h := startGossip(t)
		a, peer := h.connect("A"), h.connect("peer")
		var all []*wire.SignedAnnouncement
		for i := range 150 {
			s := creator.repo(t, commitID(1000+i), 5, map[string]string{"refs/heads/main": commitID(i)})
			h.deliver(a, s, 0)
			all = append(all, s)
		}
		eventually(t, 10*time.Second, "all held", func() bool { return len(h.saved(all[len(all)-1])) == 1 })
		// The peer holds the same, except: one missing, one at an older seq.
		var items []wire.SlotItem
		for i, s := range all {
			a, origin, _ := wire.OpenAnnouncement(s, time.Now())
			seq := a.Seq
			switch i {
			case 7:
				continue
			case 9:
				seq--
			}
			items = append(items, wire.SlotItem{Slot: wire.SlotIDOf(announcementKey(a, origin)), Seq: seq})
		}
		own := h.ownNodeAnnouncement()
		oa, oo, _ := wire.OpenAnnouncement(own, time.Now())
		items = append(items, wire.SlotItem{Slot: wire.SlotIDOf(announcementKey(oa, oo)), Seq: oa.Seq})
		peerSet := wire.NewReconcileSet(items)
		msg := peerSet.Start()
		// Gossip may have started a reconciliation of its own on connect
		// (the smaller ID does): the answers come after it.
		base := 0
		if h.id.String() < peer.id.String() {
			base = 1
		}
		for round := 0; msg != nil && round < 10; round++ {
			h.repair(peer, reconcileFrame(msg))
			var answer *wire.Reconcile
			eventually(t, 5*time.Second, fmt.Sprintf("reconcile answer %d", round), func() bool {
				n := base + round
				for _, m := range peer.frames.all() {
					if f, ok := m.(*wire.Frame); ok && f.GetReconcile() != nil {
						if n == 0 {
							answer = f.GetReconcile()
							return true
						}
						n--
					}
				}
				return false
			})
			msg = peerSet.Respond(answer).Message
		}
		h.waitFrame(peer, all[7])
		h.waitFrame(peer, all[9])
		if n := len(peer.gossipFrames()); n != 2 {
			t.Errorf("peer got %d announcements, want 2", n)
			for _, g := range peer.gossipFrames() {
				a, _, _ := wire.OpenAnnouncement(g.Announcement, time.Now())
				t.Logf("sent: %v", a)
			}
		}
	})
}
