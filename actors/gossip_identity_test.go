package actors

import (
	"fmt"
	"testing"
	"time"

	"github.com/menode/menode/wire"
)

// identityFixture: a repository created by A, with documents built on it.
type identityFixture struct {
	t       *testing.T
	a, b, c signer
	root    string
	repo    wire.RepoID
	first   wire.Identity
	seq     uint64
}

func newIdentityFixture(t *testing.T) *identityFixture {
	f := &identityFixture{t: t, a: newSigner(t), b: newSigner(t), c: newSigner(t), root: commitID(900), seq: 100}
	f.repo = f.a.repoID(t, f.root)
	f.first = wire.FirstIdentity(f.repo, f.a.id, f.root)
	return f
}

// next signs the version after (doc, id) with delegates and threshold,
// by signers.
func (f *identityFixture) next(doc *wire.RepoIdentity, id wire.Identity, delegates []wire.NodeID, threshold int, signers ...signer) (*wire.RepoIdentity, wire.Identity) {
	f.t.Helper()
	d, err := wire.ProposeVersion(doc, id, delegates, threshold)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, s := range signers {
		if err := wire.SignProposal(s.key, d); err != nil {
			f.t.Fatal(err)
		}
	}
	got, _, err := wire.VerifyProposal(d)
	if err != nil {
		f.t.Fatal(err)
	}
	return d, got
}

// publish is the announcement of doc by origin, with a fresh seq; unchecked
// so that invalid documents can be sent.
func (f *identityFixture) publish(origin signer, doc *wire.RepoIdentity) *wire.SignedAnnouncement {
	f.seq++
	return signUnchecked(f.t, origin.key, &wire.Announcement{Origin: origin.id.String(), Seq: f.seq, TimestampMs: time.Now().UnixMilli(),
		Body: &wire.Announcement_Identity{Identity: doc}})
}

// refs is delegate d's announcement of refs of A's repository.
func (f *identityFixture) refs(d signer, commit string) *wire.SignedAnnouncement {
	f.seq++
	creator := ""
	if d.id != f.a.id {
		creator = f.a.id.String()
	}
	return d.sign(f.t, &wire.Announcement{Seq: f.seq, TimestampMs: time.Now().UnixMilli(),
		Body: &wire.Announcement_Repo{Repo: &wire.RepoAnnouncement{
			RepoId: f.repo.String(), RootCommit: f.root, Name: "r", DefaultBranch: "main", Creator: creator,
			Refs: []*wire.Ref{{Name: "refs/heads/main", Commit: commit}},
		}}})
}

func (h *gossipHarness) identities() []wire.Identity {
	var out []wire.Identity
	for _, m := range h.sync.all() {
		if c, ok := m.(*identityChanged); ok {
			out = append(out, c.Identity)
		}
	}
	return out
}

func (h *gossipHarness) waitIdentity(version uint64) wire.Identity {
	h.t.Helper()
	var got wire.Identity
	eventually(h.t, 5*time.Second, fmt.Sprintf("sync is told of version %d", version), func() bool {
		ids := h.identities()
		if len(ids) > 0 && ids[len(ids)-1].Version == version {
			got = ids[len(ids)-1]
			return true
		}
		return false
	})
	return got
}

func (h *gossipHarness) delegateRefs(d wire.NodeID) int {
	n := 0
	for _, m := range h.sync.all() {
		if a, ok := m.(*delegateAnnounced); ok && a.Delegate == d {
			n++
		}
	}
	return n
}

// hostile delivers misbehaveMax distinct announcements from peer p and
// checks that p is banned for them and that none was relayed to q.
func (h *gossipHarness) hostile(p, q *fakePeer, reason string, make func() *wire.SignedAnnouncement) {
	h.t.Helper()
	before := h.stats().Dropped[reason]
	var sent []*wire.SignedAnnouncement
	for range misbehaveMax {
		s := make()
		sent = append(sent, s)
		h.deliver(p, s, 3)
	}
	bans := h.waitBans(1)
	if bans[0].ID != p.id {
		h.t.Fatalf("banned %s, want the sender %s", bans[0].ID, p.id)
	}
	if got := h.stats().Dropped[reason] - before; got != misbehaveMax {
		h.t.Errorf("dropped %q: %d, want %d", reason, got, misbehaveMax)
	}
	for _, s := range sent {
		if len(q.framesOf(s)) > 0 {
			h.t.Error("a dropped announcement was relayed")
		}
	}
}

func TestGossipIdentity_versionSignedByNonDelegate(t *testing.T) {
	f := newIdentityFixture(t)
	h := startGossip(t)
	p, q := h.connect("P"), h.connect("Q")
	// Version 2 naming C, signed by C (not a delegate of version 1).
	doc, _ := wire.ProposeVersion(nil, f.first, []wire.NodeID{f.a.id, f.c.id}, 1)
	if err := wire.SignProposal(f.c.key, doc); err != nil {
		t.Fatal(err)
	}
	h.hostile(p, q, dropInvalid, func() *wire.SignedAnnouncement { return f.publish(f.c, doc) })
	if ids := h.identities(); len(ids) != 0 {
		t.Fatalf("sync was told of %d documents", len(ids))
	}
	// C's refs are still not taken.
	h.deliver(q, f.refs(f.c, commitID(1)), 3)
	eventually(t, 5*time.Second, "C's refs dropped as not a delegate's", func() bool { return h.stats().Dropped[dropNotDelegate] == 1 })
	if h.delegateRefs(f.c.id) != 0 {
		t.Fatal("refs by a non-delegate went to sync")
	}
}

func TestGossipIdentity_replayedOlderVersion(t *testing.T) {
	f := newIdentityFixture(t)
	h := startGossip(t)
	p, q := h.connect("P"), h.connect("Q")
	doc2, id2 := f.next(nil, f.first, []wire.NodeID{f.a.id, f.b.id}, 1, f.a)
	doc3, _ := f.next(doc2, id2, []wire.NodeID{f.a.id, f.b.id, f.c.id}, 1, f.a)
	h.deliver(q, f.publish(f.a, doc2), 3)
	h.waitIdentity(2)
	h.deliver(q, f.publish(f.a, doc3), 3)
	h.waitIdentity(3)
	// Version 2 again, in new announcements by a delegate of it.
	h.hostile(p, q, dropStaleIdentity, func() *wire.SignedAnnouncement { return f.publish(f.b, doc2) })
	if ids := h.identities(); ids[len(ids)-1].Version != 3 {
		t.Fatalf("kept version %d after the replay, want 3", ids[len(ids)-1].Version)
	}
}

func TestGossipIdentity_refsByRemovedDelegate(t *testing.T) {
	f := newIdentityFixture(t)
	h := startGossip(t)
	p, q := h.connect("P"), h.connect("Q")
	doc2, id2 := f.next(nil, f.first, []wire.NodeID{f.a.id, f.b.id}, 1, f.a)
	h.deliver(q, f.publish(f.a, doc2), 3)
	h.waitIdentity(2)
	before := f.refs(f.b, commitID(2))
	h.deliver(q, before, 3)
	eventually(t, 5*time.Second, "B's refs go to sync", func() bool { return h.delegateRefs(f.b.id) == 1 })
	h.waitFrame(p, before)

	doc3, _ := f.next(doc2, id2, []wire.NodeID{f.a.id}, 1, f.a)
	h.deliver(q, f.publish(f.a, doc3), 3)
	removed := h.waitIdentity(3)
	if removed.IsDelegate(f.b.id) || !removed.IsFormer(f.b.id) {
		t.Fatalf("version 3: %+v", removed)
	}
	// B's refs held from before are no longer served.
	eventually(t, 5*time.Second, "B's held refs dropped", func() bool {
		for _, m := range h.store.all() {
			if d, ok := m.(*deleteAnnouncement); ok && d.Key == slotKey(kindRepo, f.b.id, f.repo.String()) {
				return true
			}
		}
		return false
	})
	n := 10
	h.hostile(p, q, dropRemovedDelegate, func() *wire.SignedAnnouncement { n++; return f.refs(f.b, commitID(n)) })
	if got := h.delegateRefs(f.b.id); got != 1 {
		t.Fatalf("sync told of B's refs %d times, want once (before the removal)", got)
	}
	// A's refs are still taken.
	h.deliver(q, f.refs(f.a, commitID(3)), 3)
	h.waitLearned(f.repo)
}

func TestGossipIdentity_forkKeepsTheLowerHash(t *testing.T) {
	f := newIdentityFixture(t)
	doc2, id2 := f.next(nil, f.first, []wire.NodeID{f.a.id, f.b.id}, 1, f.a)
	x, xid := f.next(doc2, id2, []wire.NodeID{f.a.id, f.b.id, f.c.id}, 1, f.a)
	y, yid := f.next(doc2, id2, []wire.NodeID{f.b.id}, 1, f.b)
	want := xid
	if wire.CompareIdentity(yid, xid) > 0 {
		want = yid
	}
	type published struct {
		doc *wire.RepoIdentity
		by  signer
	}
	for _, order := range [][]published{{{x, f.a}, {y, f.b}}, {{y, f.b}, {x, f.a}}} {
		h := startGossip(t)
		q := h.connect("Q")
		h.deliver(q, f.publish(f.a, doc2), 3)
		h.waitIdentity(2)
		h.deliver(q, f.publish(order[0].by, order[0].doc), 3)
		h.waitIdentity(3)
		h.deliver(q, f.publish(order[1].by, order[1].doc), 3)
		eventually(t, 5*time.Second, "the fork is recorded", func() bool { return len(h.stats().IdentityForks) == 1 })
		eventually(t, 5*time.Second, "the lower hash is kept, in either order", func() bool {
			ids := h.identities()
			return ids[len(ids)-1].Hash() == want.Hash()
		})
		fk := h.stats().IdentityForks[0]
		if fk.Repo != f.repo || fk.KeptVersion != 3 || fk.OtherVersion != 3 || fk.Kept == fk.Other {
			t.Errorf("fork: %+v", fk)
		}
		if h.stats().Dropped[dropInvalid] != 0 || len(h.bans()) != 0 {
			t.Error("a valid fork was taken for misbehaviour")
		}
	}
}
