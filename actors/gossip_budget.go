// Gossip's byte budgets: the bytes of held announcements, per origin and
// in total, with the evictions that keep them within it; and the catch-up
// budget, the bytes one peer is sent by reconciliation and grafts.

package actors

import (
	"cmp"
	"slices"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/wire"
)

// heldBudget counts the bytes of held announcements, per origin and in
// total, and lists each origin's slot keys: one map entry per origin with
// both (30,000 Sybil keys under a flood), its keys a slice, not a set, as
// most origins hold one or two (a map each took 12 MB; the few that hold
// many are walked whole to evict anyway).
type heldBudget struct {
	total, perOrigin int
	sum              int
	origins          map[wire.NodeID]originHeld
}

// originHeld is what one origin holds: its bytes and its slots' keys.
type originHeld struct {
	used int
	keys []string
}

// used is the bytes origin holds.
func (b *heldBudget) used(origin wire.NodeID) int { return b.origins[origin].used }

// keys are origin's slot keys.
func (b *heldBudget) keys(origin wire.NodeID) []string { return b.origins[origin].keys }

// add counts a new slot of origin (hold removes the old one first).
func (b *heldBudget) add(origin wire.NodeID, key string, size int) {
	b.sum += size
	o := b.origins[origin]
	o.used += size
	o.keys = append(o.keys, key)
	b.origins[origin] = o
}

func (b *heldBudget) remove(origin wire.NodeID, key string, size int) {
	b.sum -= size
	o := b.origins[origin]
	o.used -= size
	if i := slices.Index(o.keys, key); i >= 0 {
		o.keys[i] = o.keys[len(o.keys)-1]
		o.keys[len(o.keys)-1] = ""
		o.keys = o.keys[:len(o.keys)-1]
	}
	if len(o.keys) == 0 {
		delete(b.origins, origin)
		return
	}
	b.origins[origin] = o
}

// largest is the origin holding the most bytes, never self.
func (b *heldBudget) largest(self wire.NodeID) wire.NodeID {
	var best wire.NodeID
	most := -1
	for origin, o := range b.origins {
		if origin != self && o.used > most {
			best, most = origin, o.used
		}
	}
	return best
}

func oldSize(h *held) int {
	if h == nil {
		return 0
	}
	return h.size()
}

// evictOldest drops origin's oldest held announcement other than keep.
func (g *gossip) evictOldest(ctx actor.Context, origin wire.NodeID, keep string) bool {
	var victim string
	var oldest int64
	for _, key := range g.budget.keys(origin) {
		if h := g.latest[key]; key != keep && h != nil && (victim == "" || h.ts < oldest) {
			victim, oldest = key, h.ts
		}
	}
	if victim == "" {
		return false
	}
	g.drop(victim)
	g.dropped[dropEvicted]++
	ctx.Send(g.store, &deleteAnnouncement{Key: victim})
	if id, ok := repoOfKey(victim); ok {
		ctx.Send(g.store, &forgetRepo{ID: id})
		g.toSync(ctx, &repoForgotten{ID: id})
	}
	g.log.Debug("announcement evicted to stay within budget", "key", victim, "origin", origin)
	return true
}

// push sends p the announcements held under keys, ours first, then the
// newest, within its catch-up byte budget. They travel as any other: what
// is new to p goes on along the tree from there.
func (g *gossip) push(ctx actor.Context, p *gossipPeer, keys []string, ttl uint32) {
	if len(keys) == 0 {
		return
	}
	all := make([]*held, 0, len(keys))
	for _, k := range keys {
		if h := g.latest[k]; h != nil {
			all = append(all, h)
		}
	}
	slices.SortFunc(all, func(a, b *held) int {
		if (a.origin == g.id) != (b.origin == g.id) {
			if a.origin == g.id {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.ts, a.ts)
	})
	// The budget refills at catchUp bytes a minute, up to catchUp.
	now := g.now()
	p.credit = min(float64(g.catchUp), p.credit+now.Sub(p.at).Minutes()*float64(g.catchUp))
	p.at = now
	// What is held in memory goes as it is; the rest is read from the
	// store (loadHeld), and the frames go in order once it answers.
	raws := make([][]byte, 0, len(all))
	var stored []heldAt
	pushed := 0
	for _, h := range all {
		if float64(h.size()) > p.credit || pushed+h.size() > maxPushBytes {
			g.dropped[dropCatchUp]++
			continue
		}
		p.credit -= float64(h.size())
		pushed += h.size()
		if h.raw == nil {
			stored = append(stored, heldAt{Key: g.byID[h.msgID], Seq: h.seq, at: len(raws)})
		}
		raws = append(raws, h.raw)
	}
	send := func() {
		frames := make([]*wire.Frame, 0, len(raws))
		for _, raw := range raws {
			s := new(wire.SignedAnnouncement)
			if raw != nil && proto.Unmarshal(raw, s) == nil {
				frames = append(frames, gossipFrame(s, ttl))
			}
		}
		if len(frames) > 0 {
			ctx.Send(p.pid, &sendFrames{Frames: frames})
		}
	}
	if len(stored) == 0 {
		send()
		return
	}
	askFor(ctx, g.store, &loadHeld{Slots: stored}, func(got [][]byte, err error) {
		if err != nil {
			g.log.Debug("gossip: read held announcements", "err", err)
		}
		for i, raw := range got {
			if i < len(stored) {
				raws[stored[i].at] = raw // nil: replaced or evicted meanwhile
			}
		}
		send()
	})
}

// maxPushBytes bounds one push, whatever the peer's catch-up budget: a
// push waits, decoded, in the peer's send queue until the peer reads it,
// and a peer reads at most frameRate frames a second; 8 MiB of small
// announcements at once (the whole budget) took a minute to drain, and
// a few of them queued for one slow peer held tens of MiB (pushes of 1
// MiB still held 8). What is left out goes in the next reconciliation,
// within the budget.
const maxPushBytes = 256 << 10

// repoOfKey is the repository of a repository announcement's slot key
// (see slotKey).
func repoOfKey(key string) (wire.RepoID, bool) {
	rest, ok := strings.CutPrefix(key, kindRepo+"/")
	if !ok {
		return wire.RepoID{}, false
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return wire.RepoID{}, false
	}
	id, err := wire.ParseRepoID(rest[i+1:])
	return id, err == nil
}
