// The push tree: a new announcement goes whole to eager peers and as its
// message ID (IHave) to lazy ones; a missing message is asked for (Graft),
// which makes that link eager; a link that brings copies is pruned (Prune).

package actors

import (
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/wire"
)

const maxMissing = 10_000 // message IDs announced to us and not received, remembered at most

// missingMsg is a message ID peers announced to us (IHave), and who did,
// in order; grafted is how many of them we asked already.
type missingMsg struct {
	from    []wire.NodeID
	grafted int
	since   time.Time // the first IHave
}

// relay pushes a new announcement along the tree: whole to eager peers,
// its message ID to lazy ones (batched for IHaveDelay), never back to
// the peer it came from. It returns how many whole copies it sent.
func (g *gossip) relay(ctx actor.Context, s *wire.SignedAnnouncement, id [32]byte, ttl uint32, except wire.NodeID) (sent int) {
	f := gossipFrame(s, ttl)
	for pid, p := range g.peers {
		switch {
		case pid == except:
		case p.eager:
			ctx.Send(p.pid, &sendFrame{Frame: f})
			sent++
		default:
			p.ihave = append(p.ihave, id[:])
			if !g.flushing {
				g.flushing = true
				g.timerSeq++
				g.timers[g.timerSeq] = sendAfter(ctx, g.ihaveDelay, &flushIHave{timer: g.timerSeq})
			}
		}
	}
	return sent
}

func (g *gossip) flushIHave(ctx actor.Context) {
	for _, p := range g.peers {
		for ids := range slices.Chunk(p.ihave, wire.MaxIHaveIDs) {
			ctx.Send(p.pid, &sendFrame{Frame: &wire.Frame{Body: &wire.Frame_Ihave{Ihave: &wire.IHave{Ids: ids}}}})
		}
		p.ihave = nil
	}
}

// repair handles the frames that keep the tree and the held sets whole:
// IHave, Graft, Prune and Reconcile.
func (g *gossip) repair(ctx actor.Context, m *gossipRepair) {
	p := g.peers[m.From]
	if p == nil || p.pid != m.PID {
		// Not connected yet as far as we know: the transport's
		// peerConnected may still be on its way.
		if p = g.early[m.PID]; p == nil {
			if len(g.early) >= 256 {
				return
			}
			p = g.newPeer(m.PID)
			g.early[m.PID] = p
		}
	}
	var err error
	switch b := m.Frame.Body.(type) {
	case *wire.Frame_Ihave:
		if err = wire.CheckIHave(b.Ihave); err == nil {
			g.announced(ctx, m.From, b.Ihave.Ids)
		}
	case *wire.Frame_Graft:
		if err = wire.CheckGraft(b.Graft); err == nil {
			p.eager = true
			var keys []string
			for _, id := range b.Graft.Ids {
				if key, ok := g.byID[[32]byte(id)]; ok {
					keys = append(keys, key)
				}
			}
			g.push(ctx, p, keys, defaultTTL)
		}
	case *wire.Frame_Prune:
		p.eager = false
	case *wire.Frame_Reconcile:
		if err = wire.CheckReconcile(b.Reconcile); err == nil && g.takeStep(p) {
			g.reconcile(ctx, m.From, p, b.Reconcile)
		}
	}
	if err != nil {
		ctx.Send(p.pid, &closePeer{Code: wire.ErrorCode_ERROR_PROTOCOL, Reason: err.Error()})
	}
}

// announced notes message IDs a peer has (IHave) that we have not received,
// and asks for them (graft) if they do not arrive within GraftTimeout.
func (g *gossip) announced(ctx actor.Context, from wire.NodeID, ids [][]byte) {
	var due [][32]byte
	for _, b := range ids {
		id := [32]byte(b)
		if _, held := g.byID[id]; held || g.seen.copies(id) > 0 {
			continue
		}
		if m := g.missing[id]; m != nil {
			if len(m.from) < 8 && !slices.Contains(m.from, from) {
				m.from = append(m.from, from)
			}
			continue
		}
		if len(g.missing) >= maxMissing {
			continue
		}
		g.missing[id] = &missingMsg{from: []wire.NodeID{from}, since: time.Now()}
		due = append(due, id)
	}
	if len(due) > 0 {
		g.after(ctx, g.graftWait.wait(), due)
	}
}

// graft asks for the announced messages still missing, each from the next
// peer that announced it, and makes that link eager: the tree repairs
// itself where an eager push did not come. A message announced by more
// peers is asked for again after half the timeout.
func (g *gossip) graft(ctx actor.Context, ids [][32]byte) {
	ask := map[wire.NodeID][][]byte{}
	var again [][32]byte
	for _, id := range ids {
		m := g.missing[id]
		if m == nil {
			continue
		}
		for m.grafted < len(m.from) && g.peers[m.from[m.grafted]] == nil {
			m.grafted++
		}
		if m.grafted == len(m.from) {
			delete(g.missing, id)
			continue
		}
		from := m.from[m.grafted]
		m.grafted++
		g.graftWait.grafting(id, m.since)
		ask[from] = append(ask[from], id[:])
		again = append(again, id)
	}
	for from, want := range ask {
		p := g.peers[from]
		p.eager = true
		for chunk := range slices.Chunk(want, wire.MaxGraftIDs) {
			ctx.Send(p.pid, &sendFrame{Frame: &wire.Frame{Body: &wire.Frame_Graft{Graft: &wire.Graft{Ids: chunk}}}})
		}
	}
	if len(again) > 0 {
		g.after(ctx, g.graftWait.wait()/2, again)
	}
}

// after sends gossip a graftDue for ids after d.
func (g *gossip) after(ctx actor.Context, d time.Duration, ids [][32]byte) {
	g.timerSeq++
	g.timers[g.timerSeq] = sendAfter(ctx, d, &graftDue{IDs: ids, timer: g.timerSeq})
}

func (g *gossip) eagerPeers() int {
	n := 0
	for _, p := range g.peers {
		if p.eager {
			n++
		}
	}
	return n
}
