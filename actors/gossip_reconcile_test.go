package actors

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/wire"
)

// TestGossip_antiEntropySignsNothingNew: at db2567c announce() compared
// the new body with the held one before setting Origin, so they never
// matched and every gossip interval signed a new NodeAnnouncement (a new
// message for the whole network). Each tick now reconciles with one peer
// and signs nothing while nothing changed.
func TestGossip_antiEntropySignsNothingNew(t *testing.T) {
	t.Parallel()
	h := startGossip(t)
	p := h.connect("A")
	signed := func() int {
		n := 0
		for _, m := range h.store.all() {
			if sa, ok := m.(*saveAnnouncement); ok && sa.Key == "node/"+h.id.String() {
				n++
			}
		}
		return n
	}
	isStart := func(m any) bool {
		f, ok := m.(*wire.Frame)
		r := f.GetReconcile()
		return ok && r != nil && len(r.Ranges) == 1 && len(r.Ranges[0].Upper) == 0 && r.Ranges[0].Mode == wire.ReconcileMode_RECONCILE_FINGERPRINT
	}
	before := 0
	if h.id.String() < p.id.String() {
		before = 1 // gossip started one on connect
	}
	for range 3 {
		h.send(&antiEntropy{})
	}
	eventually(t, 5*time.Second, "three reconciliations started", func() bool { return p.count(isStart) == before+3 })
	if n := signed(); n != 1 {
		t.Errorf("node announcement signed %d times, want once", n)
	}
	if n := len(p.gossipFrames()); n != 0 {
		t.Errorf("%d announcements pushed by anti-entropy ticks, want none (reconciliation sends only what the peer lacks)", n)
	}
}

// TestGossip_catchUpByReconciliation: a peer that reconnects holding
// everything gossip holds receives less than 1 KiB per 100 announcements
// held; one that holds nothing receives all of them.
func TestGossip_catchUpByReconciliation(t *testing.T) {
	t.Parallel()
	const announcements = 300
	h := startGossip(t)
	source := h.connect("source")
	var items []wire.SlotItem
	for i := range announcements {
		s := newSigner(t).repo(t, commitID(3000+i), uint64(1+i), map[string]string{"refs/heads/main": commitID(i)})
		h.deliver(source, s, 0)
		if i == announcements-1 {
			eventually(t, 20*time.Second, "all held", func() bool { return len(h.saved(s)) == 1 })
		}
	}
	// What gossip holds, as the peers' own sets: the announcements and
	// gossip's own NodeAnnouncement.
	for _, m := range h.store.all() {
		if sa, ok := m.(*saveAnnouncement); ok {
			items = append(items, wire.SlotItem{Slot: wire.SlotIDOf(sa.Key), Seq: sa.Seq})
		}
	}
	held := h.stats().Held
	if held != len(items) || held != announcements+1 {
		t.Fatalf("gossip holds %d, saved %d, want %d", held, len(items), announcements+1)
	}

	// run plays the peer's side of a reconciliation it starts, to the end,
	// and returns every frame gossip sent it from connect on.
	var markers []*wire.SignedAnnouncement
	run := func(name string, set *wire.ReconcileSet) []any {
		p := h.connect(name)
		msg := set.Start()
		for round := 0; msg != nil; round++ {
			if round > 10 {
				t.Fatalf("%s: no end after %d rounds", name, round)
			}
			h.repair(p, reconcileFrame(msg))
			var answer *wire.Reconcile
			eventually(t, 10*time.Second, fmt.Sprintf("%s: answer %d", name, round), func() bool {
				answer = nil
				n := 0
				for _, m := range p.frames.all() {
					// Gossip's own start (the smaller ID starts one on
					// connect) is not an answer.
					if f, ok := m.(*wire.Frame); ok && f.GetReconcile() != nil {
						if r := f.GetReconcile(); !(len(r.Ranges) == 1 && r.Ranges[0].Mode == wire.ReconcileMode_RECONCILE_FINGERPRINT && len(r.Ranges[0].Upper) == 0) {
							if n == round {
								answer = r
							}
							n++
						}
					}
				}
				return answer != nil
			})
			msg = set.Respond(answer).Message
		}
		// A marker through gossip's mailbox: everything before it was
		// sent. Markers are held too: no run counts them.
		marker := newSigner(t).repo(t, commitID(9000+len(markers)), 1, nil)
		markers = append(markers, marker)
		h.deliver(source, marker, 1)
		h.waitFrame(p, marker)
		var out []any
		for _, m := range p.frames.all() {
			if f, ok := m.(*wire.Frame); !ok || !slices.ContainsFunc(markers, func(x *wire.SignedAnnouncement) bool {
				return bytes.Equal(f.GetGossip().GetAnnouncement().GetPayload(), x.Payload)
			}) {
				out = append(out, m)
			}
		}
		return out
	}
	size := func(frames []any) (bytes, announcements int) {
		for _, m := range frames {
			if f, ok := m.(*wire.Frame); ok {
				bytes += proto.Size(f)
				if f.GetGossip() != nil {
					announcements++
				}
			}
		}
		return bytes, announcements
	}

	same, n := size(run("holds everything", wire.NewReconcileSet(items)))
	t.Logf("a peer holding all %d announcements received %d bytes (%d announcements)", held, same, n)
	if limit := 1024 * held / 100; same >= limit || n != 0 {
		t.Errorf("a peer holding everything received %d bytes and %d announcements, want under %d bytes and none", same, n, limit)
	}

	all, n := size(run("holds nothing", wire.NewReconcileSet(nil)))
	t.Logf("a peer holding nothing received %d bytes: %d announcements", all, n)
	if n != held {
		t.Errorf("a peer holding nothing received %d announcements, want all %d", n, held)
	}

	// Ten of them at an older seq and ten missing: those twenty come.
	partial := slices.Clone(items[20:])
	for _, it := range items[:10] {
		partial = append(partial, wire.SlotItem{Slot: it.Slot, Seq: it.Seq - 1})
	}
	some, n := size(run("holds some", wire.NewReconcileSet(partial)))
	t.Logf("a peer missing 10 and holding 10 older received %d bytes: %d announcements", some, n)
	if n != 20 {
		t.Errorf("a peer missing 10 and holding 10 older received %d announcements, want 20", n)
	}
}
