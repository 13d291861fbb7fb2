package actors

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/wire"
)

// These tests run the gossip actor alone in a real actor system, with fakes
// for what surrounds it: a transport and a sync that record what gossip asks
// of them (dialNode, banNode; repoAnnounced), a store that records what gossip
// saves, and peers that record the frames gossip sends them. Every step is a message, and
// gossip handles its messages in order: to check that something did not
// happen, a test sends a later genuine message, waits for its effect, and
// then checks that the earlier one left no trace.

func TestGossip_behavior(t *testing.T) {
	t.Parallel()
	creatorA, creatorB := newSigner(t), newSigner(t)

	t.Run("valid repo announcement is stored and relayed to the others with TTL-1", func(t *testing.T) {
		t.Parallel()
		h := startGossip(t)
		a, b := h.connect("A"), h.connect("B")
		refs := map[string]string{"refs/heads/main": commitID(1), "refs/tags/v1": commitID(2)}
		s := creatorA.repo(t, commitID(10), 7, refs)

		h.deliver(a, s, 5)

		got := h.waitFrame(b, s)
		if got.Ttl != 4 {
			t.Errorf("relayed with TTL %d, want 4", got.Ttl)
		}
		learned := h.waitLearned(creatorA.repoID(t, commitID(10)))
		if !maps.Equal(learned.Repo.Refs, refs) {
			t.Errorf("learned refs %v, want %v", learned.Repo.Refs, refs)
		}
		if learned.Repo.Creator != creatorA.id || learned.Repo.Seq != 7 || learned.Repo.RootCommit != commitID(10) {
			t.Errorf("learned %+v, want creator %s, seq 7, root %s", learned.Repo, creatorA.id, commitID(10))
		}
		if n := len(h.saved(s)); n != 1 {
			t.Errorf("saveAnnouncement for it %d times, want 1", n)
		}
		// A later message from B reaches A; then A must hold no copy of the first.
		later := creatorB.repo(t, commitID(11), 1, nil)
		h.deliver(b, later, 5)
		h.waitFrame(a, later)
		if n := len(a.framesOf(s)); n != 0 {
			t.Errorf("announcement sent back to the peer it came from (%d times)", n)
		}
	})

	t.Run("bad signature is dropped and does not shadow the genuine copy", func(t *testing.T) {
		t.Parallel()
		genuine := creatorA.repo(t, commitID(20), 1, map[string]string{"refs/heads/main": commitID(21)})
		flippedSig := proto.Clone(genuine).(*wire.SignedAnnouncement)
		flippedSig.Signature[3] ^= 0x01
		otherKey := proto.Clone(genuine).(*wire.SignedAnnouncement)
		otherKey.Signature = ed25519.Sign(creatorB.key, signedPayload(genuine.Payload))
		flippedPayload := proto.Clone(genuine).(*wire.SignedAnnouncement)
		flippedPayload.Payload[len(flippedPayload.Payload)-1] ^= 0x01 // inside the last ref's commit id

		for _, bad := range []struct {
			name string
			s    *wire.SignedAnnouncement
		}{
			{"signature byte flipped", flippedSig},
			{"signed by another key", otherKey},
			{"payload byte flipped", flippedPayload},
		} {
			t.Run(bad.name, func(t *testing.T) {
				t.Parallel()
				if _, _, err := wire.OpenAnnouncement(bad.s, time.Now()); !errors.Is(err, wire.ErrBadSignature) {
					t.Fatalf("test setup: OpenAnnouncement = %v, want ErrBadSignature", err)
				}
				h := startGossip(t)
				a, b := h.connect("A"), h.connect("B")

				h.deliver(a, bad.s, 5)
				h.deliver(a, genuine, 5)

				got := h.waitFrame(b, genuine)
				if !sameSigned(got.Announcement, genuine) {
					t.Errorf("relayed a copy with signature %x, want the genuine one", got.Announcement.Signature)
				}
				for _, f := range b.gossipFrames() {
					if sameSigned(f.Announcement, bad.s) {
						t.Errorf("forged copy relayed to B")
					}
				}
				if n := len(b.framesOf(genuine)); n != 1 {
					t.Errorf("B got the genuine payload %d times, want 1", n)
				}
				if n := len(a.framesOf(genuine)) + len(a.framesOf(bad.s)); n != 0 {
					t.Errorf("A got %d copies back", n)
				}
				for _, s := range h.saved(genuine) {
					if !sameSigned(s, genuine) {
						t.Errorf("stored a forged copy")
					}
				}
				if n := len(h.saved(genuine)); n != 1 {
					t.Errorf("saveAnnouncement for the genuine payload %d times, want 1", n)
				}
				if n := len(h.saved(bad.s)); n != 0 && !bytes.Equal(bad.s.Payload, genuine.Payload) {
					t.Errorf("saveAnnouncement for the forged payload %d times, want 0", n)
				}
				if n := len(h.learned()); n != 1 {
					t.Errorf("learnRepo %d times, want 1", n)
				}
			})
		}
	})

	t.Run("repo announcement signed by a non-creator is dropped", func(t *testing.T) {
		t.Parallel()
		h := startGossip(t)
		a, b := h.connect("A"), h.connect("B")
		// B signs an announcement for a repository A created.
		forged := &wire.Announcement{
			Origin: creatorB.id.String(), Seq: 1, TimestampMs: time.Now().UnixMilli(),
			Body: &wire.Announcement_Repo{Repo: &wire.RepoAnnouncement{
				RepoId: creatorA.repoID(t, commitID(30)).String(), RootCommit: commitID(30),
				Name: "stolen", DefaultBranch: "main", Refs: wire.RefsFromMap(map[string]string{"refs/heads/main": commitID(31)}),
			}},
		}
		s := signUnchecked(t, creatorB.key, forged)
		if _, _, err := wire.OpenAnnouncement(s, time.Now()); !errors.Is(err, wire.ErrBadAnnouncement) || errors.Is(err, wire.ErrBadSignature) {
			t.Fatalf("test setup: OpenAnnouncement = %v, want ErrBadAnnouncement for the creator rule", err)
		}

		h.deliver(a, s, 5)
		genuine := creatorA.repo(t, commitID(30), 2, map[string]string{"refs/heads/main": commitID(32)})
		h.deliver(a, genuine, 5)
		h.waitFrame(b, genuine)
		h.waitLearned(creatorA.repoID(t, commitID(30)))

		if n := len(b.framesOf(s)); n != 0 {
			t.Errorf("forged announcement relayed %d times", n)
		}
		if n := len(h.saved(s)); n != 0 {
			t.Errorf("forged announcement stored %d times", n)
		}
		for _, l := range h.learned() {
			if l.Repo.Creator != creatorA.id || l.Repo.Name == "stolen" {
				t.Errorf("learned the forged repository: %+v", l.Repo)
			}
		}
	})

	t.Run("replays and older seqs are ignored, a newer seq is accepted", func(t *testing.T) {
		t.Parallel()
		h := startGossip(t)
		a, b := h.connect("A"), h.connect("B")
		root := commitID(40)
		seq5 := creatorA.repo(t, root, 5, map[string]string{"refs/heads/main": commitID(45)})
		seq3 := creatorA.repo(t, root, 3, map[string]string{"refs/heads/main": commitID(43)})
		seq5b := creatorA.repo(t, root, 5, map[string]string{"refs/heads/main": commitID(55)}) // same seq, other refs
		seq6 := creatorA.repo(t, root, 6, map[string]string{"refs/heads/main": commitID(46)})

		h.deliver(a, seq5, 5)
		h.waitFrame(b, seq5)
		// Replays with TTL 0, which a relay sends at the end of its hops:
		// a replay with a TTL also prunes the link (TestGossip_tree).
		h.deliver(a, seq5, 0)  // the very same message again
		h.deliver(b, seq5, 0)  // and from the other side
		h.deliver(a, seq3, 5)  // older
		h.deliver(a, seq5b, 5) // same seq, different payload
		h.deliver(a, seq6, 5)
		h.waitFrame(b, seq6)
		// The relay to B and the messages to the store and to sync are
		// sent one after another, not in an order B's frame implies.
		eventually(t, 5*time.Second, "seq 6 stored and learned", func() bool {
			return len(h.saved(seq6)) > 0 && len(h.learned()) >= 2
		})

		if n := len(b.framesOf(seq5)); n != 1 {
			t.Errorf("B got seq 5 %d times, want 1", n)
		}
		if n := len(a.framesOf(seq5)); n != 0 {
			t.Errorf("A got seq 5 %d times, want 0", n)
		}
		for name, s := range map[string]*wire.SignedAnnouncement{"seq 3": seq3, "second seq 5": seq5b} {
			if n := len(b.framesOf(s)) + len(a.framesOf(s)); n != 0 {
				t.Errorf("%s relayed %d times", name, n)
			}
			if n := len(h.saved(s)); n != 0 {
				t.Errorf("%s stored %d times", name, n)
			}
		}
		if n := len(h.saved(seq5)); n != 1 {
			t.Errorf("seq 5 stored %d times, want 1", n)
		}
		if n := len(h.saved(seq6)); n != 1 {
			t.Errorf("seq 6 stored %d times, want 1", n)
		}
		var seqs []uint64
		for _, l := range h.learned() {
			seqs = append(seqs, l.Repo.Seq)
		}
		if fmt.Sprint(seqs) != "[5 6]" {
			t.Errorf("learnRepo seqs %v, want [5 6]", seqs)
		}
		if got := h.copies(seq5); got != 3 {
			t.Errorf("countCopies(seq 5) = %d, want 3 (one accepted, two duplicates)", got)
		}
	})

	t.Run("TTL", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			in, out uint32
			relayed bool
		}{
			{in: 0, relayed: false},
			{in: 1, out: 0, relayed: true},
			{in: 2, out: 1, relayed: true},
			{in: defaultTTL, out: defaultTTL - 1, relayed: true},
			{in: 1000, out: defaultTTL - 1, relayed: true}, // capped
		} {
			t.Run(fmt.Sprintf("in %d", tc.in), func(t *testing.T) {
				t.Parallel()
				h := startGossip(t)
				a, b := h.connect("A"), h.connect("B")
				s := creatorA.repo(t, commitID(60), 1, nil)
				h.deliver(a, s, tc.in)
				h.waitLearned(creatorA.repoID(t, commitID(60)))
				marker := creatorB.repo(t, commitID(61), 1, nil)
				h.deliver(a, marker, 3)
				h.waitFrame(b, marker)

				frames := b.framesOf(s)
				switch {
				case !tc.relayed && len(frames) != 0:
					t.Errorf("relayed %d times with TTL %d, want not relayed", len(frames), frames[0].Ttl)
				case tc.relayed && len(frames) != 1:
					t.Errorf("relayed %d times, want once", len(frames))
				case tc.relayed && frames[0].Ttl != tc.out:
					t.Errorf("relayed with TTL %d, want %d", frames[0].Ttl, tc.out)
				}
				if n := len(h.saved(s)); n != 1 {
					t.Errorf("stored %d times, want 1", n)
				}
			})
		}
	})

	t.Run("misbehaveMax invalid messages get the peer banned", func(t *testing.T) {
		t.Parallel()
		h := startGossip(t)
		a, b := h.connect("A"), h.connect("B")
		genuine := creatorA.repo(t, commitID(70), 1, nil)
		badSig := proto.Clone(genuine).(*wire.SignedAnnouncement)
		badSig.Signature[0] ^= 0x80
		badAddr := signUnchecked(t, creatorA.key, &wire.Announcement{
			Origin: creatorA.id.String(), Seq: 1, TimestampMs: time.Now().UnixMilli(),
			Body: &wire.Announcement_Node{Node: &wire.NodeAnnouncement{Alias: "x", Addresses: []string{"0.0.0.0:1"}}},
		})
		nonCreator := signUnchecked(t, creatorB.key, &wire.Announcement{
			Origin: creatorB.id.String(), Seq: 1, TimestampMs: time.Now().UnixMilli(),
			Body: &wire.Announcement_Repo{Repo: &wire.RepoAnnouncement{
				RepoId: creatorA.repoID(t, commitID(72)).String(), RootCommit: commitID(72), Name: "x", DefaultBranch: "main",
			}},
		})
		invalid := []*wire.Gossip{
			{Announcement: badSig, Ttl: 3},
			{Announcement: nil, Ttl: 3},
			{Announcement: badAddr, Ttl: 3},
			{Announcement: &wire.SignedAnnouncement{Payload: []byte("junk"), Signature: make([]byte, ed25519.SignatureSize)}, Ttl: 3},
			{Announcement: nonCreator, Ttl: 3},
		}
		if len(invalid) != misbehaveMax {
			t.Fatalf("test has %d invalid messages, want misbehaveMax = %d", len(invalid), misbehaveMax)
		}
		// Invalid messages from B count against B, not A.
		for _, g := range invalid[:misbehaveMax-1] {
			h.send(&gossipIn{From: a.id, Gossip: g})
			h.send(&gossipIn{From: b.id, Gossip: g})
		}
		h.deliver(a, genuine, 3)
		h.waitFrame(b, genuine)
		if bans := h.bans(); len(bans) != 0 {
			t.Fatalf("banned after %d invalid messages: %+v", misbehaveMax-1, bans)
		}

		h.send(&gossipIn{From: a.id, Gossip: invalid[misbehaveMax-1]})
		bans := h.waitBans(1)
		if bans[0].ID != a.id {
			t.Errorf("banned %s, want A %s", bans[0].ID, a.id)
		}
		if want := (Config{}).withDefaults().BanFor; bans[0].For != want {
			t.Errorf("banned for %v, want %v", bans[0].For, want)
		}
		// B stays one strike short; a marker makes sure nothing more is queued.
		marker := creatorB.repo(t, commitID(71), 1, nil)
		h.deliver(b, marker, 3)
		h.waitFrame(a, marker)
		if bans := h.bans(); len(bans) != 1 {
			t.Errorf("%d bans, want only A's: %+v", len(bans), bans)
		}
		for _, f := range b.gossipFrames() {
			if f.Announcement != nil && (bytes.Equal(f.Announcement.Signature, badSig.Signature) || bytes.Equal(f.Announcement.Payload, badAddr.Payload)) {
				t.Errorf("invalid message relayed")
			}
		}
	})

	// wire/PROTOCOL.md section 6: verify before anything else; a bad signature is dropped and
	// counts against the peer. A forged copy of a message already accepted
	// is no exception: it is not a copy of the message, and it is a strike.
	t.Run("forged copies of an accepted message are strikes, not copies", func(t *testing.T) {
		t.Parallel()
		h := startGossip(t)
		a, b := h.connect("A"), h.connect("B")
		genuine := creatorA.repo(t, commitID(75), 1, nil)
		h.deliver(a, genuine, 3)
		h.waitFrame(b, genuine)
		for i := range misbehaveMax {
			forged := proto.Clone(genuine).(*wire.SignedAnnouncement)
			forged.Signature[i] ^= 0x01
			h.deliver(a, forged, 3)
		}
		marker := creatorB.repo(t, commitID(76), 1, nil)
		h.deliver(b, marker, 3)
		h.waitFrame(a, marker)
		if got := h.copies(genuine); got != 1 {
			t.Errorf("countCopies = %d after %d forged copies, want 1", got, misbehaveMax)
		}
		if bans := h.bans(); len(bans) != 1 || bans[0].ID != a.id {
			t.Errorf("bans after %d forged copies from A: %+v, want one of A", misbehaveMax, bans)
		}
	})

	t.Run("a peer that connects later catches up at once", func(t *testing.T) {
		t.Parallel()
		h := startGossip(t)
		a := h.connect("A")
		s := creatorA.repo(t, commitID(80), 1, map[string]string{"refs/heads/main": commitID(81)})
		h.deliver(a, s, 2)
		h.waitLearned(creatorA.repoID(t, commitID(80)))

		c := h.connect("C")
		h.catchUp(c)
		got := h.waitFrame(c, s)
		if got.Ttl != defaultTTL {
			t.Errorf("caught up with TTL %d, want %d", got.Ttl, defaultTTL)
		}
		// And gossip's own node announcement.
		own := h.ownNodeAnnouncement()
		h.waitFrame(c, own)
	})

	t.Run("own announcement coming back is counted, not relayed", func(t *testing.T) {
		t.Parallel()
		h := startGossip(t)
		own := h.ownNodeAnnouncement()
		a, b := h.connect("A"), h.connect("B")
		h.catchUp(b)
		h.waitFrame(b, own)
		h.deliver(a, own, 5)
		marker := creatorA.repo(t, commitID(90), 1, nil)
		h.deliver(a, marker, 5)
		h.waitFrame(b, marker)
		if n := len(b.framesOf(own)); n != 1 {
			t.Errorf("B got our own announcement %d times, want 1 (catch-up only)", n)
		}
		if got := h.copies(own); got != 2 {
			t.Errorf("countCopies(own) = %d, want 2", got)
		}
		if got := h.copies(creatorB.repo(t, commitID(91), 1, nil)); got != 0 {
			t.Errorf("countCopies(unknown) = %d, want 0", got)
		}
	})

	t.Run("node announcement asks the transport to dial its addresses", func(t *testing.T) {
		t.Parallel()
		h := startGossip(t)
		a, b := h.connect("A"), h.connect("B")
		addrs := []string{"127.0.0.1:4000", "[::1]:4001"}
		s := creatorA.sign(t, &wire.Announcement{
			Seq: 1, TimestampMs: time.Now().UnixMilli(),
			Body: &wire.Announcement_Node{Node: &wire.NodeAnnouncement{Alias: "far", Addresses: addrs}},
		})
		h.deliver(a, s, 4)
		h.waitFrame(b, s)
		dials := h.waitDials(len(addrs))
		for i, d := range dials {
			if d.ID != creatorA.id || d.Addr != addrs[i] || !d.Discovered {
				t.Errorf("dial %d = %+v, want %s at %s, discovered", i, d, creatorA.id, addrs[i])
			}
		}
		var saved bool
		for _, m := range h.store.all() {
			if sn, ok := m.(*saveNode); ok && sn.Node.ID == creatorA.id && sn.Node.Alias == "far" {
				saved = true
			}
		}
		if !saved {
			t.Errorf("saveNode for %s not sent", creatorA.id)
		}
	})

	t.Run("a disconnected peer gets nothing", func(t *testing.T) {
		t.Parallel()
		h := startGossip(t)
		a, b, c := h.connect("A"), h.connect("B"), h.connect("C")
		h.send(&peerDisconnected{ID: b.id, PID: b.pid})
		s := creatorA.repo(t, commitID(100), 1, nil)
		h.deliver(a, s, 5)
		h.waitFrame(c, s)
		marker := creatorB.repo(t, commitID(101), 1, nil)
		h.deliver(a, marker, 5)
		h.waitFrame(c, marker)
		if n := len(b.framesOf(s)) + len(b.framesOf(marker)); n != 0 {
			t.Errorf("disconnected peer got %d frames", n)
		}
	})
}

// TestHardening6_futureTimestampBlamesNoRelay (hardening finding 6): an
// announcement stamped just under the skew limit at one relay is "from the
// future" at a neighbour whose clock is behind. The relay may be honest:
// the neighbour drops it without a strike, however many it gets, and says
// so in its counters; a genuine message from that relay still goes through.
func TestHardening6_futureTimestampBlamesNoRelay(t *testing.T) {
	t.Parallel()
	author := newSigner(t)
	h := startGossip(t)
	relay, other := h.connect("relay"), h.connect("other")
	for i := range 3 * misbehaveMax {
		future := author.sign(t, &wire.Announcement{
			Seq: uint64(i + 1), TimestampMs: time.Now().Add(wire.MaxClockSkew + time.Minute).UnixMilli(),
			Body: &wire.Announcement_Node{Node: &wire.NodeAnnouncement{Alias: "early"}},
		})
		h.deliver(relay, future, 3)
	}
	genuine := author.repo(t, commitID(90), 1, nil)
	h.deliver(relay, genuine, 3)
	h.waitFrame(other, genuine)
	if bans := h.bans(); len(bans) != 0 {
		t.Fatalf("the relay was banned for the author's timestamps: %+v", bans)
	}
	res, err := h.system.Root.RequestFuture(h.gossip, &gossipStats{}, 5*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got := res.(GossipStats).Dropped[dropFuture]; got != int64(3*misbehaveMax) {
		t.Errorf("dropped %d from the future, want %d", got, 3*misbehaveMax)
	}
}

// TestGossip_waitsForSiblings: node spawns gossip before sync and the
// transport, then tells it where they are (gossipSiblings). What gossip has
// for them before that is not lost: it goes to them, in order, when
// gossipSiblings comes, and what comes after goes to them at once.
func TestGossip_waitsForSiblings(t *testing.T) {
	t.Parallel()
	h := startGossipAlone(t, Config{})
	creator := newSigner(t)
	a, _ := h.connect("A"), h.connect("B")
	node := creator.sign(t, &wire.Announcement{
		Seq: 1, TimestampMs: time.Now().UnixMilli(),
		Body: &wire.Announcement_Node{Node: &wire.NodeAnnouncement{Alias: "far", Addresses: []string{"127.0.0.1:4000"}}},
	})
	h.deliver(a, node, 4)
	h.deliver(a, creator.repo(t, commitID(200), 1, nil), 4)
	h.deliver(a, creator.repo(t, commitID(201), 1, nil), 4)
	h.waitLearned(creator.repoID(t, commitID(201)))
	if n := len(h.transport.all()) + len(h.sync.all()); n != 0 {
		t.Fatalf("%d messages reached the transport or sync before gossip knew where they are", n)
	}
	h.send(h.siblings())
	announced := func() []wire.RepoID {
		var ids []wire.RepoID
		for _, m := range h.sync.all() {
			if r, ok := m.(*repoAnnounced); ok {
				ids = append(ids, r.Repo.ID)
			}
		}
		return ids
	}
	eventually(t, 5*time.Second, "two repoAnnounced at sync", func() bool { return len(announced()) == 2 })
	if got, want := announced(), []wire.RepoID{creator.repoID(t, commitID(200)), creator.repoID(t, commitID(201))}; !slices.Equal(got, want) {
		t.Errorf("repoAnnounced for %v, want %v (in order)", got, want)
	}
	eventually(t, 5*time.Second, "two messages at the transport", func() bool { return len(h.transport.all()) >= 2 })
	var kinds []string
	for _, m := range h.transport.all() {
		kinds = append(kinds, fmt.Sprintf("%T", m))
	}
	if want := []string{"*actors.dialNode", "*actors.peerUseful"}; !slices.Equal(kinds, want) {
		t.Errorf("the transport got %v, want %v", kinds, want)
	}
	// Now it knows: a new announcement reaches sync at once.
	h.deliver(a, creator.repo(t, commitID(202), 1, nil), 4)
	eventually(t, 5*time.Second, "a third repoAnnounced at sync", func() bool { return len(announced()) == 3 })
}

// Harness.

// gossipHarness is one gossip actor with its fakes.
type gossipHarness struct {
	t      *testing.T
	system *actor.ActorSystem
	id     wire.NodeID
	gossip *actor.PID
	store  *msgLog // messages gossip sent to the store
	// The transport and sync gossip sends to, and what they received.
	transportPID, syncPID *actor.PID
	transport, sync       *msgLog
	// The storeBarrier requests the store has not answered (answered
	// at once unless holdBarriers is set).
	barrierMu    sync.Mutex
	barriers     []*actor.PID
	holdBarriers bool
}

// fakePeer is a peer actor that records the frames gossip sends it.
type fakePeer struct {
	h      *gossipHarness
	id     wire.NodeID
	pid    *actor.PID
	frames *msgLog
}

func startGossip(t *testing.T) *gossipHarness {
	t.Helper()
	return startGossipWith(t, Config{})
}

// startGossipWith starts gossip with the budgets of cfg and, as node does,
// tells it where the transport and sync are.
func startGossipWith(t *testing.T, cfg Config) *gossipHarness {
	t.Helper()
	h := startGossipAlone(t, cfg)
	h.send(h.siblings())
	return h
}

// siblings is the message that tells gossip where the harness's transport
// and sync are.
func (h *gossipHarness) siblings() *gossipSiblings {
	return &gossipSiblings{Transport: h.transportPID, Sync: h.syncPID}
}

// startGossipAlone starts gossip with the budgets of cfg, not yet told
// where the transport and sync are.
func startGossipAlone(t *testing.T, cfg Config) *gossipHarness {
	t.Helper()
	logs := &msgLog{}
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	h := &gossipHarness{t: t, system: system, store: &msgLog{}, transport: &msgLog{}, sync: &msgLog{}}
	key, id := newSignerKey(t)
	h.id = id
	logger := slog.New(slog.NewTextHandler(logWriter{logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	saved := map[string]*saveAnnouncement{} // what loadHeld reads back
	storePID := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *loadAnnouncements:
			ctx.Respond([][]byte{})
		case *loadRepos:
			ctx.Respond([]repoState{})
		case *loadRepoSummaries:
			ctx.Respond([]repoSummary{})
		case *storeBarrier:
			h.barrierMu.Lock()
			defer h.barrierMu.Unlock()
			if !h.holdBarriers {
				ctx.Respond(true)
				return
			}
			h.barriers = append(h.barriers, ctx.Sender())
		case *loadHeld:
			out := make([][]byte, len(m.Slots))
			for i, sl := range m.Slots {
				if a := saved[sl.Key]; a != nil && a.Seq == sl.Seq {
					out[i] = a.Signed
				}
			}
			ctx.Respond(out)
		case *saveAnnouncement, *learnRepo, *saveNode, *deleteAnnouncement, *forgetRepo:
			switch m := m.(type) {
			case *saveAnnouncement:
				saved[m.Key] = m
			case *deleteAnnouncement:
				delete(saved, m.Key)
			}
			h.store.add(m)
		}
	}))
	h.transportPID = system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *dialNode, *banNode, *peerUseful:
			h.transport.add(m)
		}
	}))
	h.syncPID = system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *repoAnnounced, *inventorySeen, *identityChanged, *delegateAnnounced:
			h.sync.add(m)
		}
	}))
	spawned := make(chan *actor.PID, 1)
	parent := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Started); ok {
			cfg.Alias, cfg.GossipInterval, cfg.Logger = "t", time.Hour, logger
			g := newGossip(cfg, key, id, nil, storePID)
			spawned <- ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return g }))
		}
	}, actor.WithSupervisor(stopOnPanic)))
	h.gossip = <-spawned
	t.Cleanup(func() {
		_ = system.Root.PoisonFuture(parent).Wait()
		_ = system.Root.PoisonFuture(storePID).Wait()
		_ = system.Root.PoisonFuture(h.transportPID).Wait()
		_ = system.Root.PoisonFuture(h.syncPID).Wait()
		system.Shutdown()
		if t.Failed() {
			t.Logf("gossip log:\n%s", strings.Join(logs.strings(), ""))
		}
	})
	// Ready once it has loaded the (empty) store and signed its own
	// NodeAnnouncement.
	eventually(t, 5*time.Second, "gossip saves its own node announcement", func() bool {
		for _, m := range h.store.all() {
			if sa, ok := m.(*saveAnnouncement); ok && sa.Key == "node/"+id.String() {
				return true
			}
		}
		return false
	})
	return h
}

// connect spawns a fake peer and registers it with gossip.
func (h *gossipHarness) connect(alias string) *fakePeer {
	h.t.Helper()
	_, id := newSignerKey(h.t)
	p := &fakePeer{h: h, id: id, frames: &msgLog{}}
	p.pid = h.system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *sendFrame:
			p.frames.add(m.Frame)
		case *sendFrames: // catch-up
			for _, f := range m.Frames {
				p.frames.add(f)
			}
		case *closePeer:
			p.frames.add(m)
		}
	}))
	h.t.Cleanup(func() { _ = h.system.Root.PoisonFuture(p.pid).Wait() })
	h.send(&peerConnected{ID: id, PID: p.pid, Hello: &wire.Hello{Protocol: wire.ProtocolVersion, Did: id.String(), Alias: alias}})
	return p
}

func (h *gossipHarness) send(m any) { h.system.Root.Send(h.gossip, m) }

// catchUp has p start a reconciliation holding nothing: gossip answers
// with everything it holds.
func (h *gossipHarness) catchUp(p *fakePeer) {
	h.repair(p, reconcileFrame(wire.NewReconcileSet(nil).Start()))
}

// repair hands gossip f (IHave, Graft, Prune, Reconcile) as if p had sent it.
func (h *gossipHarness) repair(p *fakePeer, f *wire.Frame) {
	h.send(&gossipRepair{From: p.id, PID: p.pid, Frame: f})
}

// deliver hands gossip s as if peer p had received it with ttl.
func (h *gossipHarness) deliver(p *fakePeer, s *wire.SignedAnnouncement, ttl uint32) {
	h.send(&gossipIn{From: p.id, Gossip: &wire.Gossip{Announcement: s, Ttl: ttl}})
}

// waitFrame waits until p got a frame carrying s (same payload and
// signature) and returns the first.
func (h *gossipHarness) waitFrame(p *fakePeer, s *wire.SignedAnnouncement) *wire.Gossip {
	h.t.Helper()
	var got *wire.Gossip
	eventually(h.t, 5*time.Second, "peer receives the announcement", func() bool {
		for _, g := range p.framesOf(s) {
			if sameSigned(g.Announcement, s) {
				got = g
				return true
			}
		}
		return false
	})
	return got
}

func (h *gossipHarness) waitLearned(id wire.RepoID) learnRepo {
	h.t.Helper()
	var got learnRepo
	eventually(h.t, 5*time.Second, "store is told of repo "+id.String(), func() bool {
		for _, l := range h.learned() {
			if l.Repo.ID == id {
				got = l
				return true
			}
		}
		return false
	})
	return got
}

func (h *gossipHarness) learned() []learnRepo {
	var out []learnRepo
	for _, m := range h.store.all() {
		if l, ok := m.(*learnRepo); ok {
			out = append(out, *l)
		}
	}
	return out
}

// saved returns the saveAnnouncement messages whose payload is s's.
func (h *gossipHarness) saved(s *wire.SignedAnnouncement) []*wire.SignedAnnouncement {
	var out []*wire.SignedAnnouncement
	for _, m := range h.store.all() {
		sa, ok := m.(*saveAnnouncement)
		if !ok {
			continue
		}
		got := new(wire.SignedAnnouncement)
		if err := proto.Unmarshal(sa.Signed, got); err != nil {
			h.t.Errorf("stored announcement under %s does not decode: %v", sa.Key, err)
			continue
		}
		if bytes.Equal(got.Payload, s.Payload) {
			out = append(out, got)
		}
	}
	return out
}

// ownNodeAnnouncement is the NodeAnnouncement gossip signed at start.
func (h *gossipHarness) ownNodeAnnouncement() *wire.SignedAnnouncement {
	h.t.Helper()
	for _, m := range h.store.all() {
		if sa, ok := m.(*saveAnnouncement); ok && sa.Key == "node/"+h.id.String() {
			s := new(wire.SignedAnnouncement)
			if err := proto.Unmarshal(sa.Signed, s); err != nil {
				h.t.Fatal(err)
			}
			return s
		}
	}
	h.t.Fatal("gossip saved no node announcement of its own")
	return nil
}

func (h *gossipHarness) copies(s *wire.SignedAnnouncement) int {
	h.t.Helper()
	res, err := h.system.Root.RequestFuture(h.gossip, &countCopies{ID: wire.AnnouncementID(s)}, 5*time.Second).Result()
	if err != nil {
		h.t.Fatalf("countCopies: %v", err)
	}
	return res.(int)
}

func (h *gossipHarness) bans() []*banNode {
	var out []*banNode
	for _, m := range h.transport.all() {
		if b, ok := m.(*banNode); ok {
			out = append(out, b)
		}
	}
	return out
}

func (h *gossipHarness) waitBans(n int) []*banNode {
	h.t.Helper()
	eventually(h.t, 5*time.Second, fmt.Sprintf("%d banNode at the transport", n), func() bool { return len(h.bans()) >= n })
	return h.bans()
}

func (h *gossipHarness) waitDials(n int) []*dialNode {
	h.t.Helper()
	var out []*dialNode
	eventually(h.t, 5*time.Second, fmt.Sprintf("%d dialNode at the transport", n), func() bool {
		out = out[:0]
		for _, m := range h.transport.all() {
			if d, ok := m.(*dialNode); ok {
				out = append(out, d)
			}
		}
		return len(out) >= n
	})
	return out
}

// waitFrameWhere waits until p got a frame that match accepts.
func (p *fakePeer) waitFrameWhere(what string, match func(any) bool) any {
	p.h.t.Helper()
	var got any
	eventually(p.h.t, 5*time.Second, what, func() bool {
		for _, m := range p.frames.all() {
			if match(m) {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

func (p *fakePeer) count(match func(any) bool) int {
	n := 0
	for _, m := range p.frames.all() {
		if match(m) {
			n++
		}
	}
	return n
}

func isPrune(m any) bool { f, ok := m.(*wire.Frame); return ok && f.GetPrune() != nil }

// hasID matches an IHave (ihave) or Graft (!ihave) frame listing s's message ID.
func hasID(s *wire.SignedAnnouncement, ihave bool) func(any) bool {
	id := wire.AnnouncementID(s)
	return func(m any) bool {
		f, ok := m.(*wire.Frame)
		if !ok {
			return false
		}
		ids := f.GetGraft().GetIds()
		if ihave {
			ids = f.GetIhave().GetIds()
		}
		for _, x := range ids {
			if bytes.Equal(x, id[:]) {
				return true
			}
		}
		return false
	}
}

func (p *fakePeer) gossipFrames() []*wire.Gossip {
	var out []*wire.Gossip
	for _, m := range p.frames.all() {
		if f, ok := m.(*wire.Frame); ok && f.GetGossip() != nil {
			out = append(out, f.GetGossip())
		}
	}
	return out
}

// framesOf returns the gossip frames p got whose payload is s's.
func (p *fakePeer) framesOf(s *wire.SignedAnnouncement) []*wire.Gossip {
	var out []*wire.Gossip
	for _, g := range p.gossipFrames() {
		if bytes.Equal(g.GetAnnouncement().GetPayload(), s.Payload) {
			out = append(out, g)
		}
	}
	return out
}

// sameSigned reports whether a and b are the same payload with the same signature.
func sameSigned(a, b *wire.SignedAnnouncement) bool {
	return bytes.Equal(a.GetPayload(), b.GetPayload()) && bytes.Equal(a.GetSignature(), b.GetSignature())
}

// signer is a remote node's identity, for signing test announcements.
type signer struct {
	key ed25519.PrivateKey
	id  wire.NodeID
}

func newSigner(t *testing.T) signer {
	key, id := newSignerKey(t)
	return signer{key: key, id: id}
}

func newSignerKey(t *testing.T) (ed25519.PrivateKey, wire.NodeID) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv, wire.NodeIDFromKey(pub)
}

func (s signer) repoID(t *testing.T, root string) wire.RepoID {
	t.Helper()
	id, err := wire.NewRepoID(root, s.id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// repo signs a RepoAnnouncement of the repository s created at root.
func (s signer) repo(t *testing.T, root string, seq uint64, refs map[string]string) *wire.SignedAnnouncement {
	t.Helper()
	return s.sign(t, &wire.Announcement{
		Seq: seq, TimestampMs: time.Now().UnixMilli(),
		Body: &wire.Announcement_Repo{Repo: &wire.RepoAnnouncement{
			RepoId: s.repoID(t, root).String(), RootCommit: root, Name: "repo-" + root[:6],
			DefaultBranch: "main", Refs: wire.RefsFromMap(refs),
		}},
	})
}

func (s signer) sign(t *testing.T, a *wire.Announcement) *wire.SignedAnnouncement {
	t.Helper()
	a.Origin = s.id.String()
	signed, err := wire.SignAnnouncement(s.key, a)
	if err != nil {
		t.Fatal(err)
	}
	// signUnchecked must sign exactly as wire does, or the tests that use it
	// would test the signature check instead of what they mean to.
	if u := signUnchecked(t, s.key, a); !proto.Equal(u, signed) {
		t.Fatal("signUnchecked disagrees with wire.SignAnnouncement")
	}
	return signed
}

// signUnchecked signs a the way wire.SignAnnouncement does, without its
// validity checks, to build correctly signed invalid announcements.
func signUnchecked(t *testing.T, key ed25519.PrivateKey, a *wire.Announcement) *wire.SignedAnnouncement {
	t.Helper()
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return &wire.SignedAnnouncement{Payload: payload, Signature: ed25519.Sign(key, signedPayload(payload))}
}

// signedPayload is what an announcement signature covers (wire's
// announcementDomain, then the payload).
func signedPayload(payload []byte) []byte {
	return append([]byte("megaengine/announcement/v1\x00"), payload...)
}

// commitID is a made-up commit ID, distinct per n.
func commitID(n int) string { return fmt.Sprintf("%040x", n+0xc0ffee) }

func (h *gossipHarness) stats() GossipStats {
	h.t.Helper()
	res, err := h.system.Root.RequestFuture(h.gossip, &gossipStats{}, 5*time.Second).Result()
	if err != nil {
		h.t.Fatal(err)
	}
	return res.(GossipStats)
}

// msgLog records messages from actors, for the test goroutine to read.
type msgLog struct {
	mu   sync.Mutex
	msgs []any
}

func (l *msgLog) add(m any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, m)
}

func (l *msgLog) all() []any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]any(nil), l.msgs...)
}

func (l *msgLog) strings() []string {
	var out []string
	for _, m := range l.all() {
		out = append(out, m.(string))
	}
	return out
}

// logWriter makes a msgLog an io.Writer of log lines.
type logWriter struct{ l *msgLog }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.add(string(p))
	return len(p), nil
}
