package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// SetIntervals changes, while the node runs, how often its periodic work
// runs: gossip's anti-entropy (Config.GossipInterval), the watcher's poll of
// owned repositories (WatchInterval) and sync's check of every repository
// (SyncInterval). A zero field leaves that interval as it is. Each actor
// restarts its ticker with the new interval, so the next tick comes one new
// interval from now. Reply: the SetIntervals sent.
type SetIntervals struct {
	Gossip time.Duration `json:"gossip"`
	Watch  time.Duration `json:"watch"`
	Sync   time.Duration `json:"sync"`
}

// setInterval is SetIntervals' word to one actor.
type setInterval struct{ d time.Duration }

// SetIntervals applies s to the running node (a SIGHUP's reload).
func (n *Node) SetIntervals(s SetIntervals) error {
	_, err := n.Request(&s)
	return err
}

// setIntervals passes each interval that is set to the actor that ticks at
// it; offline there are none.
func (n *node) setIntervals(ctx actor.Context, m *SetIntervals) {
	for _, to := range []struct {
		pid *actor.PID
		d   time.Duration
	}{{n.gossip, m.Gossip}, {n.watcher, m.Watch}, {n.sync, m.Sync}} {
		if to.pid != nil && to.d > 0 {
			ctx.Send(to.pid, &setInterval{to.d})
		}
	}
	ctx.Respond(m)
}

// The actors' own halves: a ticker that runs is restarted; one that has
// not started yet starts at the new interval.

func (g *gossip) setInterval(ctx actor.Context, d time.Duration) {
	g.interval = d
	if g.cancel != nil {
		g.cancel()
		g.cancel = sendEvery(ctx, d, &antiEntropy{})
	}
}

func (w *watcher) setInterval(ctx actor.Context, d time.Duration) {
	w.interval = d
	if w.cancel != nil {
		w.cancel()
		w.cancel = sendEvery(ctx, d, &watchTick{})
	}
}

func (s *syncer) setInterval(ctx actor.Context, d time.Duration) {
	s.cfg.SyncInterval = d
	if s.cancelTick != nil && !s.stopping {
		s.cancelTick()
		s.cancelTick = sendEvery(ctx, d, &syncTick{})
	}
}
