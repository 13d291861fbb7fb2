package actors

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// What this file exports is for measuring a running node from outside the
// package (actors/actorstest, the benchmarks); nothing in the node uses it.

// RepoAnnouncementID is the message ID of the repository announcement of
// repo that this node stores (every node that accepted it stores the same
// bytes, so the same ID). It blocks; call it from outside the node's
// actors.
func (n *Node) RepoAnnouncementID(repo wire.RepoID) ([32]byte, error) {
	store, err := n.child("store")
	if err != nil {
		return [32]byte{}, err
	}
	res, err := requestResult(n.system, store, &loadAnnouncements{}, askTimeout)
	if err != nil {
		return [32]byte{}, fmt.Errorf("load announcements: %w", err)
	}
	raws, ok := res.([][]byte)
	if !ok {
		return [32]byte{}, fmt.Errorf("load announcements: reply %T", res)
	}
	for _, raw := range raws {
		s := new(wire.SignedAnnouncement)
		if proto.Unmarshal(raw, s) != nil {
			continue
		}
		// Stored announcements were checked on arrival: only the
		// clock rule could fail now, so check as of long ago.
		a, _, err := wire.OpenAnnouncement(s, time.Now().Add(100*365*24*time.Hour))
		if err == nil && a.GetRepo().GetRepoId() == repo.String() {
			return wire.AnnouncementID(s), nil
		}
	}
	return [32]byte{}, fmt.Errorf("%w: no stored announcement of %s", persist.ErrUnknownRepo, repo)
}

// AnnouncementCopies reports how many copies of the announcement with
// message ID id arrived at this node within gossip's seen window: 1 when
// no duplicate came, more when peers sent it again (the origin counts its
// own, then echoes), 0 when it never came or was forgotten. It blocks;
// call it from outside the node's actors.
func (n *Node) AnnouncementCopies(id [32]byte) (int, error) {
	gossip, err := n.child("gossip")
	if err != nil {
		return 0, err
	}
	res, err := requestResult(n.system, gossip, &countCopies{ID: id}, askTimeout)
	if err != nil {
		return 0, fmt.Errorf("count copies: %w", err)
	}
	return res.(int), nil
}

// child is the PID of one of n's actors, named under the root actor.
func (n *Node) child(name string) (*actor.PID, error) {
	pid := actor.NewPID(n.system.Address(), n.root.Id+"/"+name)
	if _, ok := n.system.ProcessRegistry.GetLocal(pid.Id); !ok {
		return nil, fmt.Errorf("no %s actor at %s", name, pid)
	}
	return pid, nil
}
