// Reconciliation (anti-entropy): gossip compares what it holds with one
// peer's held set, range by range, and sends what the peer lacks or holds
// older; on connect, and every gossip interval with one random peer.

package actors

import (
	"bytes"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/wire"
)

// Reconciliation steps answered per peer: a burst, then per second.
const (
	reconcileBurst = 64
	reconcileRate  = 4
)

// takeStep reports whether p may have one more reconciliation step
// answered: each costs a pass over what we hold, and an honest peer needs
// a handful per gossip interval. Past the rate the step is dropped; the
// next anti-entropy round starts over.
func (g *gossip) takeStep(p *gossipPeer) bool {
	now := g.now()
	p.steps = min(reconcileBurst, p.steps+now.Sub(p.stepsAt).Seconds()*reconcileRate)
	p.stepsAt = now
	if p.steps < 1 {
		g.dropped[dropReconcile]++
		return false
	}
	p.steps--
	return true
}

// reconcile answers one step of a reconciliation: it sends the peer what
// it lacks or holds older, and the next step, if any.
func (g *gossip) reconcile(ctx actor.Context, from wire.NodeID, p *gossipPeer, in *wire.Reconcile) {
	set := g.reconcileSet()
	rep := set.Respond(in)
	if p.initial {
		p.initial = false
		inSync := len(in.Ranges) == 0 && len(in.Want) == 0
		if inSync && p.eager && g.eagerPeers() > 1 {
			p.eager = false
			ctx.Send(p.pid, &sendFrame{Frame: &wire.Frame{Body: &wire.Frame_Prune{Prune: &wire.Prune{}}}})
		}
	}
	keys := make([]string, 0, len(rep.Send))
	for _, slot := range rep.Send {
		if key, ok := g.keyOfSlot(slot); ok {
			keys = append(keys, key)
		}
	}
	g.push(ctx, p, keys, defaultTTL)
	if rep.Message != nil {
		ctx.Send(p.pid, &sendFrame{Frame: reconcileFrame(rep.Message)})
	}
	g.log.Debug("reconcile step", "peer", from, "ranges_in", len(in.Ranges), "want_in", len(in.Want), "sent", len(keys))
}

// reconcileSet is the held set as reconciliation sees it, rebuilt after a
// change; but a large set (over exactSetMax items) is rebuilt no more
// often than would take 1/setCostShare of gossip's time. Under a flood
// every new connection starts a reconciliation, and rebuilding 60,000
// items for each (sorting them, hashing each slot key) took most of a
// core and made gigabytes of garbage; a set a second old misses only
// what arrived in that second, which the eager pushes carried and the
// next reconciliation repairs.
func (g *gossip) reconcileSet() *wire.ReconcileSet {
	if g.set == nil || g.setStale && (len(g.latest) <= exactSetMax || time.Since(g.setBuilt) >= setCostShare*g.setCost) {
		start := time.Now()
		g.setStale = false
		items := make([]wire.SlotItem, 0, len(g.latest))
		g.bySlot = make([]slotAt, 0, len(g.latest))
		for key, h := range g.latest {
			slot := wire.SlotIDOf(key)
			g.bySlot = append(g.bySlot, slotAt{slot: slot, key: key})
			items = append(items, wire.SlotItem{Slot: slot, Seq: h.seq})
		}
		slices.SortFunc(g.bySlot, func(a, b slotAt) int { return bytes.Compare(a.slot[:], b.slot[:]) })
		g.set = wire.NewReconcileSet(items)
		g.setBuilt, g.setCost = time.Now(), time.Since(start)
	}
	return g.set
}

// The reconciliation set is rebuilt after every change up to exactSetMax
// held items; past it, no more often than every setCostShare times the
// time a rebuild takes.
const (
	exactSetMax  = 4096
	setCostShare = 20
)

// slotAt is the slot key of a held announcement by its slot ID. The
// held set's are a slice sorted by slot ID, built with the reconciliation
// set: half the size of a map of them.
type slotAt struct {
	slot wire.SlotID
	key  string
}

// keyOfSlot is the key of the held slot with this ID, as of the last
// reconcileSet.
func (g *gossip) keyOfSlot(slot wire.SlotID) (string, bool) {
	i, ok := slices.BinarySearchFunc(g.bySlot, slot, func(e slotAt, s wire.SlotID) int { return bytes.Compare(e.slot[:], s[:]) })
	if !ok {
		return "", false
	}
	return g.bySlot[i].key, true
}

func reconcileFrame(m *wire.Reconcile) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_Reconcile{Reconcile: m}}
}
