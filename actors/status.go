package actors

// The status actor (reporter) answers `menode status` (GetStatus) by asking the
// actors that own each figure, and `menode peers` when no node runs (the
// nodes the store knows, none connected; a running node's transport
// answers ListPeers itself).

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// reporter is the status actor. transport, sync and gossip are nil offline.
type reporter struct {
	cfg     Config
	id      wire.NodeID
	started time.Time
	log     *slog.Logger
	store   *actor.PID

	transport, sync, gossip *actor.PID
	connectivity            connectivityPIDs
}

func (s *reporter) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *GetStatus:
		s.report(ctx)
	case *ListPeers:
		reply := replier(ctx)
		askFor(ctx, s.store, loadNodes{}, func(nodes []persist.Node, err error) {
			if err != nil {
				reply(err)
				return
			}
			list := PeerList{Peers: []PeerView{}}
			for _, p := range nodes {
				list.Peers = append(list.Peers, PeerView{ID: p.ID, Alias: p.Alias, Addresses: p.Addresses})
			}
			reply(list)
		})
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		s.log.Debug("reporter: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// report gathers the node's figures from the actors that own them; a
// figure whose owner does not answer is left at zero rather than failing
// the whole command.
func (s *reporter) report(ctx actor.Context) {
	reply := replier(ctx)
	st := Status{ID: s.id, Alias: s.cfg.Alias, Root: s.cfg.Root, Running: !s.cfg.Offline, Listen: []string{}, Limits: s.cfg.limits(),
		Gossip: GossipStats{Dropped: map[string]int64{}, Accepted: map[string]int64{}}, Transfers: TransferCounts{FetchesFailed: map[string]int64{}},
		Connections: ConnectionCounts{Disconnects: map[string]int64{}},
		HTTP:        s.cfg.HTTPURL, Version: Version, Started: s.started.UTC(),
		Reachability: ReachUnknown, ConfirmedAddrs: []string{}, ObservedAddrs: []string{}, LAN: LANCounts{Ignored: map[string]int64{}}}
	withRepos := func() {
		askFor(ctx, s.store, countRepos{}, func(n int, err error) {
			if err != nil {
				reply(err)
				return
			}
			st.Repos = n
			askFor(ctx, s.store, storeStats{}, func(w StoreWrites, err error) {
				if err == nil {
					st.StoreWrites = w
				}
				reply(st)
			})
		})
	}
	if s.transport == nil {
		withRepos()
		return
	}
	askFor(ctx, s.transport, linkState{}, func(info linkInfo, err error) {
		if err != nil {
			reply(err)
			return
		}
		st.Listen, st.Peers, st.Connections = info.Listen, info.Peers, info.Connections
		askFor(ctx, s.sync, &syncCounters{}, func(t syncTotals, err error) {
			if err == nil {
				st.Fetching, st.Serving, st.BytesReceived, st.BytesSent = t.Fetching, t.Serving, t.BytesIn, t.BytesOut
				st.Transfers = t.Counts
			}
			askFor(ctx, s.gossip, &gossipStats{}, func(g GossipStats, err error) {
				if err == nil {
					st.Gossip = g
				}
				s.connectivityReport(ctx, &st, withRepos)
			})
		})
	})
}
