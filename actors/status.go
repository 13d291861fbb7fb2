package actors

// The status actor (reporter) answers `menode status` (GetStatus) by asking the
// actors that own each figure, and `menode peers` when no node runs (the
// nodes the store knows, none connected; a running node's transport
// answers ListPeers itself).

import (
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// reporter is the status actor. transport, sync and gossip are nil
// offline. It keeps the last figures each owner sent: a status asks every
// owner at once and replies when all have answered or StatusWait has
// passed, whichever is first, with the latest figures it has. An owner busy
// with a flood (gossip under 60,000 announcements) answers late; its answer
// still arrives here and serves the next status. The user never waits for
// a busy actor's mailbox.
type reporter struct {
	cfg     Config
	id      wire.NodeID
	started time.Time
	log     *slog.Logger
	store   *actor.PID
	db      *persist.Store // read only: the repository count

	transport, sync, gossip *actor.PID

	link    *linkInfo
	totals  *syncTotals
	gossipS *GossipStats
	writes  *StoreWrites
	repos   int

	reach *Reachability
	lan   *LANCounts
	punch *PunchCounts
	relay *RelayCounts
	pmap  *PortMapping

	connectivity connectivityPIDs

	waiting []*statusWait // status requests not answered yet
}

// statusWait is one status request waiting for answers.
type statusWait struct {
	reply   func(any)
	pending int // owners asked in its round that have not answered
	cancel  cancelFunc
}

// Replies the reporter gets from the owners it asks; statusDue is a
// waiting request's StatusWait passing.
type (
	reposCounted struct{ n int }
	statusDue    struct{ w *statusWait }
)

func (s *reporter) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *GetStatus:
		s.ask(ctx)
	// The owners reply with values.
	case linkInfo:
		s.link = &m
		s.answered(ctx)
	case syncTotals:
		s.totals = &m
		s.answered(ctx)
	case GossipStats:
		s.gossipS = &m
		s.answered(ctx)
	case StoreWrites:
		s.writes = &m
		s.answered(ctx)
	case Reachability:
		s.reach = &m
		s.answered(ctx)
	case LANCounts:
		s.lan = &m
		s.answered(ctx)
	case PunchCounts:
		s.punch = &m
		s.answered(ctx)
	case RelayCounts:
		s.relay = &m
		s.answered(ctx)
	case PortMapping:
		s.pmap = &m
		s.answered(ctx)
	case *reposCounted:
		s.repos = m.n
		s.answered(ctx)
	case *statusDue:
		if i := slices.Index(s.waiting, m.w); i >= 0 {
			s.waiting = slices.Delete(s.waiting, i, i+1)
			m.w.reply(s.status())
		}
	case error:
		s.log.Debug("status: an owner failed", "err", m)
		s.answered(ctx)
	case *ListPeers:
		reply := replier(ctx)
		askFor(ctx, s.store, &loadNodes{}, func(nodes []persist.Node, err error) {
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
	case *actor.Stopping:
		for _, w := range s.waiting {
			w.cancel()
		}
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		s.log.Debug("reporter: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// ask asks every owner for its figures and waits for them, at most
// StatusWait once each has answered before.
func (s *reporter) ask(ctx actor.Context) {
	w := &statusWait{reply: replier(ctx)}
	owners := []struct {
		pid *actor.PID
		msg any
	}{{s.transport, &linkState{}}, {s.sync, &syncCounters{}}, {s.gossip, &gossipStats{}}, {s.store, &storeStats{}},
		{s.connectivity.reach, &reachState{}}, {s.connectivity.lan, &lanState{}}, {s.connectivity.punch, &punchState{}}, {s.connectivity.relay, &relayState{}},
		{s.connectivity.portmap, &portMapState{}}}
	for _, o := range owners {
		if o.pid != nil {
			ctx.Request(o.pid, o.msg)
			w.pending++
		}
	}
	w.pending++
	db, self, root := s.db, ctx.Self(), ctx.ActorSystem().Root
	go func() {
		n, err := db.CountRepos()
		if err != nil {
			root.Send(self, err)
			return
		}
		root.Send(self, &reposCounted{n: n})
	}()
	// Until every owner has answered once there is nothing to fall back
	// on: the first status waits for them (a node just started answers at
	// once).
	wait := s.cfg.StatusWait
	c := s.connectivity
	if (s.transport != nil && s.link == nil) || (s.sync != nil && s.totals == nil) || (s.gossip != nil && s.gossipS == nil) || s.writes == nil ||
		(c.reach != nil && s.reach == nil) || (c.lan != nil && s.lan == nil) || (c.punch != nil && s.punch == nil) || (c.relay != nil && s.relay == nil) ||
		(c.portmap != nil && s.pmap == nil) {
		wait = askTimeout
	}
	w.cancel = sendAfter(ctx, wait, &statusDue{w: w})
	s.waiting = append(s.waiting, w)
}

// answered counts one owner's answer for every waiting request, and
// replies to those that have all theirs. An answer from an earlier round
// counts too: it is at least as fresh as the request.
func (s *reporter) answered(ctx actor.Context) {
	keep := s.waiting[:0]
	for _, w := range s.waiting {
		if w.pending--; w.pending <= 0 {
			w.cancel()
			w.reply(s.status())
			continue
		}
		keep = append(keep, w)
	}
	s.waiting = keep
}

// status is the node's state from the latest figures of each owner.
func (s *reporter) status() Status {
	st := Status{ID: s.id, Alias: s.cfg.Alias, Root: s.cfg.Root, Running: !s.cfg.Offline, Listen: []string{}, Limits: s.cfg.limits(),
		Gossip: GossipStats{Dropped: map[string]int64{}, Accepted: map[string]int64{}}, Transfers: TransferCounts{FetchesFailed: map[string]int64{}},
		Connections: ConnectionCounts{Disconnects: map[string]int64{}},
		HTTP:        s.cfg.HTTPURL, Version: Version, Started: s.started.UTC(), Repos: s.repos, Goroutines: runtime.NumGoroutine(),
		Reachability: ReachUnknown, ConfirmedAddrs: []string{}, ObservedAddrs: []string{}, LAN: LANCounts{Ignored: map[string]int64{}}, Swarms: []SwarmFetch{}}
	if l := s.link; l != nil {
		st.Listen, st.Peers, st.Connections = l.Listen, l.Peers, l.Connections
	}
	if t := s.totals; t != nil {
		st.Fetching, st.Serving, st.BytesReceived, st.BytesSent = t.Fetching, t.Serving, t.BytesIn, t.BytesOut
		st.Transfers = t.Counts
		st.Swarms = t.Swarms
	}
	if g := s.gossipS; g != nil {
		st.Gossip = *g
	}
	if w := s.writes; w != nil {
		st.StoreWrites = *w
	}

	if r := s.reach; r != nil {
		st.Reachability, st.ConfirmedAddrs, st.ObservedAddrs = r.State, r.Confirmed, r.Observed
	}
	if l := s.lan; l != nil {
		st.LAN = *l
	}
	if p := s.punch; p != nil {
		st.Punches = *p
	}
	if r := s.relay; r != nil {
		st.Relay = *r
	}
	if p := s.pmap; p != nil && p.Protocol != "" {
		st.PortMapping = p
	}
	return st
}
