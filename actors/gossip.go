package actors

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/wire"
)

// gossipIn is a gossip frame a peer actor received.
type gossipIn struct {
	From   wire.NodeID
	Peer   *actor.PID
	Gossip *wire.Gossip
}
