// The store's backlog of gossip's writes, bounded: what gossip accepts
// it hands the store without waiting (saveAnnouncement, saveNode,
// learnRepo), and a flood can be accepted faster than bbolt commits it.
// Left alone, the writes would queue in the store's mailbox without
// bound (the announcements' bytes, the records, the closures of each:
// 15 to 25 MiB under the 60,000-announcement flood). Instead gossip asks
// the store, every storeBarrierEvery accepted announcements, for a
// barrier (answered once the store has committed everything before it);
// while maxStoreBarriers of them are unanswered, gossip keeps the frame
// credits of what it handles instead of giving them back, so the peers'
// readers wait, and then QUIC's flow control makes the senders wait: the
// store's pace is the flood's. Nothing is dropped.

package actors

import (
	"github.com/asynkron/protoactor-go/actor"
)

// storeBarrier asks the store to answer once it has committed every write
// queued before it. Reply: true.
type storeBarrier struct{}

const (
	storeBarrierEvery = 256 // accepted announcements between two barriers
	maxStoreBarriers  = 4   // barriers unanswered before gossip holds its peers' credits
)

// storeBacklog is what gossip counts of its writes to the store.
type storeBacklog struct {
	since    int             // announcements accepted since the last barrier
	barriers int             // barriers asked for and not answered
	withheld []chan struct{} // frame credits kept while the store is behind
	held     int64           // credits kept so far (status: gossip.store_waits)
}

// behind reports whether the store is too far behind for gossip to take
// in more from its peers.
func (b *storeBacklog) behind() bool { return b.barriers >= maxStoreBarriers }

// stored counts an accepted announcement, whose writes went to the
// store, and asks for a barrier every storeBarrierEvery of them.
func (g *gossip) stored(ctx actor.Context) {
	b := &g.backlog
	b.since++
	if b.since < storeBarrierEvery {
		return
	}
	b.since = 0
	b.barriers++
	askFor(ctx, g.store, &storeBarrier{}, func(bool, error) {
		// An error (a timeout) counts as an answer too: a store that
		// cannot answer must not stop gossip for good.
		b.barriers--
		if !b.behind() {
			for _, c := range b.withheld {
				releaseCredit(c)
			}
			b.withheld = nil
		}
	})
}

// doneWith gives back the frame credit of a frame gossip handled, or
// keeps it while the store is behind (see storeBacklog).
func (g *gossip) doneWith(credit chan struct{}) {
	if credit == nil {
		return
	}
	if !g.backlog.behind() {
		releaseCredit(credit)
		return
	}
	g.backlog.withheld = append(g.backlog.withheld, credit)
	g.backlog.held++
}
