// Announcements from peers: verify, dedup, drop stale ones, accept the
// rest (store them and tell sync and the transport what they say), and
// count invalid ones against their sender until it is banned.

package actors

import (
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

const misbehaveMax = 5 // invalid messages from one peer before it is banned

// receive handles one announcement from a peer: verify, dedup, drop stale,
// store, relay.
func (g *gossip) receive(ctx actor.Context, m *gossipIn) {
	s := m.Gossip.GetAnnouncement()
	if s == nil {
		g.strike(ctx, m.From, errors.New("gossip frame without an announcement"))
		return
	}
	g.counted.Received++
	// Verify first: a forged copy counts against its sender even when the
	// genuine message is known, and only verified payloads enter the seen
	// window, so a forgery can never shadow the genuine message after it.
	a, origin, err := wire.OpenAnnouncement(s, g.now())
	if errors.Is(err, wire.ErrFromFuture) {
		// Valid at the relay, whose clock may be ahead of ours: the
		// author chose the timestamp, so drop it without blaming the relay.
		g.dropped[dropFuture]++
		g.log.Debug("announcement from the future dropped", "peer", m.From, "err", err)
		return
	}
	if err != nil {
		g.dropped[dropInvalid]++
		g.strike(ctx, m.From, err)
		return
	}
	id := wire.AnnouncementID(s)
	if g.seen.has(id, g.now()) {
		g.counted.Duplicates++
		// A second copy: the link it came by closes a loop in the tree
		// (one at the end of its hops, TTL 0, went nowhere further).
		if p := g.peers[m.From]; p != nil && p.eager && m.Gossip.GetTtl() > 0 {
			g.graftWait.duplicate(id, time.Now())
			p.eager = false
			ctx.Send(p.pid, &sendFrame{Frame: &wire.Frame{Body: &wire.Frame_Prune{Prune: &wire.Prune{}}}})
		}
		return
	}
	g.seen.add(id, g.now())
	g.graftWait.arrived(g.missing[id], time.Now())
	delete(g.missing, id)
	if origin == g.id {
		return // our own, back from a relay
	}
	key := announcementKey(a, origin)
	h := g.latest[key]
	if h != nil && a.Seq <= h.seq {
		g.dropped[dropStale]++
		return // stale: we hold this one or a newer one
	}
	if !g.admit(ctx, m.From, s, a, origin) {
		return // not by a delegate, or an older document (gossip_identity.go)
	}
	if !g.accept(ctx, key, s, a, origin) {
		return
	}
	g.counted.Accepted[announcementKind(a)]++
	// A full inbound table closes idle connections first. A frame can
	// come before gossip hears the peer connected (p nil): tell the
	// transport anyway (it keeps the flag once).
	if p := g.peers[m.From]; p == nil || !p.useful {
		if p != nil {
			p.useful = true
		}
		g.toTransport(ctx, &peerUseful{ID: m.From})
	}
	if ttl := m.Gossip.GetTtl(); ttl > 0 {
		g.counted.Relayed += int64(g.relay(ctx, s, id, min(ttl, defaultTTL)-1, m.From))
	}
}

// accept records a new announcement and applies what it says; false when
// the byte budgets refuse it.
func (g *gossip) accept(ctx actor.Context, key string, s *wire.SignedAnnouncement, a *wire.Announcement, origin wire.NodeID) bool {
	if !g.hold(ctx, key, s, a, origin) {
		return false
	}
	raw := g.latest[key].raw
	ctx.Send(g.store, &saveAnnouncement{Key: key, Seq: a.Seq, Signed: raw})
	switch b := a.Body.(type) {
	case *wire.Announcement_Node:
		node := persist.Node{ID: origin, Alias: b.Node.Alias, Addresses: b.Node.Addresses, LastSeen: g.now().UTC()}
		ctx.Send(g.store, &saveNode{Node: node})
		for _, addr := range b.Node.Addresses {
			g.toTransport(ctx, &dialNode{ID: origin, Alias: b.Node.Alias, Addr: addr, Discovered: true})
		}
	case *wire.Announcement_Repo:
		r := b.Repo
		if r.Creator != "" && r.Creator != origin.String() {
			g.acceptRefs(ctx, r, a, origin, raw) // another delegate's refs
			break
		}
		id, _ := wire.ParseRepoID(r.RepoId) // checked by OpenAnnouncement
		repo := persist.Repo{
			ID: id, Name: r.Name, Description: r.Description, Creator: origin,
			RootCommit: r.RootCommit, DefaultBranch: r.DefaultBranch,
			Refs: wire.RefsToMap(r.Refs), Seq: a.Seq, UpdatedAt: time.UnixMilli(a.TimestampMs).UTC(),
		}
		ctx.Send(g.store, &learnRepo{Repo: repo})
		g.toSync(ctx, &repoAnnounced{Repo: repo})
		g.log.Info("repository announced", "repo", id, "name", wire.SafeText(r.Name), "creator", origin, "refs", len(r.Refs))
	case *wire.Announcement_Inventory:
		g.toSync(ctx, inventoryOf(origin, b.Inventory))
	case *wire.Announcement_Identity:
		id, _ := wire.VerifyIdentity(b.Identity) // verified by OpenAnnouncement
		g.adopt(ctx, b.Identity, id, key)
	}
	g.stored(ctx) // gossip_backlog.go
	return true
}

// announcementKind names an announcement's kind for the counters.
func announcementKind(a *wire.Announcement) string {
	switch a.Body.(type) {
	case *wire.Announcement_Node:
		return kindNode
	case *wire.Announcement_Repo:
		return kindRepo
	case *wire.Announcement_Inventory:
		return kindInventory
	case *wire.Announcement_Identity:
		return kindIdentity
	}
	return "other"
}

// inventoryOf turns an InventoryAnnouncement (already verified) into the
// message sync takes.
func inventoryOf(origin wire.NodeID, inv *wire.InventoryAnnouncement) *inventorySeen {
	m := &inventorySeen{Origin: origin, Repos: make(map[wire.RepoID][32]byte, len(inv.Repos))}
	for _, e := range inv.Repos {
		id, err := wire.ParseRepoID(e.RepoId)
		if err != nil || len(e.RefsHash) != 32 {
			continue
		}
		m.Repos[id] = [32]byte(e.RefsHash)
		if len(e.BundleSha256) == 32 && e.BundleSize > 0 {
			if m.Bundles == nil {
				m.Bundles = map[wire.RepoID]bundleAd{}
			}
			m.Bundles[id] = bundleAd{Refs: [32]byte(e.RefsHash), SHA: [32]byte(e.BundleSha256), Size: e.BundleSize}
		}
	}
	for _, e := range inv.Fetching { // checked by wire: every field set
		if id, err := wire.ParseRepoID(e.RepoId); err == nil {
			if m.Fetching == nil {
				m.Fetching = map[wire.RepoID]bundleAd{}
			}
			m.Fetching[id] = bundleAd{Refs: [32]byte(e.RefsHash), SHA: [32]byte(e.BundleSha256), Size: e.BundleSize}
		}
	}
	return m
}

// strike counts an invalid message against the peer that sent it; past
// misbehaveMax the transport drops and bans it.
func (g *gossip) strike(ctx actor.Context, from wire.NodeID, why error) {
	g.strikes[from]++
	g.log.Warn("invalid gossip dropped", "peer", from, "strikes", g.strikes[from], "err", why)
	if g.strikes[from] >= misbehaveMax {
		delete(g.strikes, from)
		g.toTransport(ctx, &banNode{ID: from, For: g.banFor, Reason: "too many invalid announcements"})
	}
}
