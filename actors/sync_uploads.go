package actors

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/wire"
)

// Uploads: the serving transfer actors sync spawns for requests that
// peers send, within the caps in total and per peer.

// serveSlot is a serving transfer actor: for which peer, and whether it
// only refuses (busy).
type serveSlot struct {
	peer    wire.NodeID
	refused bool
}

// uploads counts the serving transfers that send a bundle: all of them,
// or those for peer.
func (s *syncer) uploads(peer wire.NodeID) int {
	n := 0
	for _, slot := range s.serving {
		if !slot.refused && (peer.IsZero() || slot.peer == peer) {
			n++
		}
	}
	return n
}

// serve spawns a serving transfer actor for an incoming request; it
// refuses the request (busy) when too many uploads run, or too many for
// that peer: a peer that opens many streams and never reads them holds
// at most MaxUploadsPerPeer slots, until their stall timeouts free them.
func (s *syncer) serve(ctx actor.Context, m *streamIn) {
	s.nextID++
	name := fmt.Sprintf("serve-%d", s.nextID)
	sv := &server{in: m, root: s.cfg.Root, store: s.store, rate: s.upload, timings: s.cfg.transferTimings(), work: s.cfg.workContext, log: s.log.With("peer", m.From),
		key: s.key, pieceSize: s.cfg.PieceSize, partials: s.partials, served: s.served}
	switch {
	case s.uploads(wire.NodeID{}) >= s.cfg.MaxUploads:
		sv.busy = "too many uploads at once"
	case s.uploads(m.From) >= s.cfg.MaxUploadsPerPeer:
		sv.busy = "too many uploads to your node at once"
	}
	pid := spawnChild(ctx, name, func() actor.Actor { return sv })
	s.serving[pid.Id] = serveSlot{peer: m.From, refused: sv.busy != ""}
	s.counts.ServesStarted++
}
