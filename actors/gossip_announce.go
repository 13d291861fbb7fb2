// This node's own announcements: its NodeAnnouncement, a RepoAnnouncement
// per repository it created, and its InventoryAnnouncement; each signed
// when what it says changed.

package actors

import (
	"maps"
	"slices"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// announceNode signs a NodeAnnouncement when ours changed (or we have none).
func (g *gossip) announceNode(ctx actor.Context) {
	body := &wire.NodeAnnouncement{Alias: g.alias, Addresses: g.addrs, Version: Version}
	g.announce(ctx, slotKey(kindNode, g.id, ""), &wire.Announcement{Body: &wire.Announcement_Node{Node: body}})
}

// announceRepo signs a RepoAnnouncement for one of our repositories when it
// differs from the one we last signed.
func (g *gossip) announceRepo(ctx actor.Context, r persist.Repo) {
	if !g.ready || !r.Local {
		return
	}
	creator := ""
	if id, ok := g.identityOf(r.ID); ok && !id.IsDelegate(g.id) {
		// Rotated away or removed: peers would refuse (and count against
		// us) what we signed.
		g.log.Warn("not announcing a repository whose identity document no longer names this node as a delegate", "repo", r.ID, "version", id.Version)
		return
	}
	if r.Creator != g.id {
		// Another's repository, of which we are a delegate (repo add
		// --repo-id): our refs name its creator.
		if id, ok := g.identityOf(r.ID); !ok || !id.IsDelegate(g.id) {
			// Its ID binds the key it was added with (before `auth init --force`).
			g.log.Warn("not announcing a repository whose document does not name this node as a delegate",
				"repo", r.ID, "path", r.Path, "creator", r.Creator)
			return
		}
		creator = r.Creator.String()
	}
	body := &wire.RepoAnnouncement{
		RepoId: r.ID.String(), RootCommit: r.RootCommit, Name: r.Name, Description: r.Description,
		DefaultBranch: r.DefaultBranch, Refs: wire.RefsFromMap(r.Refs), Creator: creator,
	}
	key := slotKey(kindRepo, g.id, r.ID.String())
	g.announce(ctx, key, &wire.Announcement{Body: &wire.Announcement_Repo{Repo: body}})
	h := g.latest[key]
	if h == nil || !maps.Equal(wire.RefsToMap(h.body().GetRepo().GetRefs()), r.Refs) {
		return // not signed (the log says why)
	}
	// Our mirror holds exactly these refs (the watcher fetched them into
	// it first): record the signed announcement that proves it, and list
	// the repository in our inventory.
	ctx.Send(g.store, &saveMirror{ID: r.ID, Mirror: persist.Mirror{
		Refs: r.Refs, Seq: h.seq, Signed: h.raw, DefaultBranch: r.DefaultBranch, SyncedAt: g.now().UTC(),
	}})
	g.inventory[r.ID] = wire.RefsHash(r.Refs)
}

// keptBundle lists b with our inventory entry of repository id while
// that entry's refs are b's (sync_swarm.go tells us of it).
func (g *gossip) keptBundle(id wire.RepoID, b bundleAd) {
	g.bundles[id] = b
}

// announceInventory signs an InventoryAnnouncement listing the repositories
// this node can serve (its own and the ones it mirrors, at the refs the
// mirror holds) when that list changed.
func (g *gossip) announceInventory(ctx actor.Context) {
	if !g.ready {
		return
	}
	inv := &wire.InventoryAnnouncement{}
	for id, sum := range g.inventory {
		e := &wire.InventoryEntry{RepoId: id.String(), RefsHash: sum[:]}
		if b, ok := g.bundles[id]; ok && b.Refs == sum {
			e.BundleSha256, e.BundleSize = b.SHA[:], b.Size // a bundle of older refs is not listed
		}
		inv.Repos = append(inv.Repos, e)
	}
	for id, b := range g.fetching {
		if g.inventory[id] != b.Refs {
			inv.Fetching = append(inv.Fetching, &wire.InventoryEntry{RepoId: id.String(), RefsHash: b.Refs[:], BundleSha256: b.SHA[:], BundleSize: b.Size})
		}
	}
	if len(inv.Repos) == 0 && len(inv.Fetching) == 0 {
		return
	}
	slices.SortFunc(inv.Repos, func(a, b *wire.InventoryEntry) int { return strings.Compare(a.RepoId, b.RepoId) })
	slices.SortFunc(inv.Fetching, func(a, b *wire.InventoryEntry) int { return strings.Compare(a.RepoId, b.RepoId) })
	g.announce(ctx, slotKey(kindInventory, g.id, ""), &wire.Announcement{Body: &wire.Announcement_Inventory{Inventory: inv}})
}

// announce signs a (origin, seq, timestamp) around body unless the latest we
// hold under key already says the same, then stores and sends it.
// seq = max(previous+1, now in ms): strictly increasing, also across restarts
// (the previous one is stored), without a counter of its own.
func (g *gossip) announce(ctx actor.Context, key string, a *wire.Announcement) {
	prev := g.latest[key]
	a.Origin = g.id.String() // before comparing: the held one has it
	if prev != nil && sameBody(prev.body(), a) {
		return
	}
	now := g.now()
	a.TimestampMs, a.Seq = now.UnixMilli(), uint64(now.UnixMilli())
	if prev != nil && prev.seq >= a.Seq {
		a.Seq = prev.seq + 1
	}
	s, err := wire.SignAnnouncement(g.key, a)
	if err != nil {
		g.log.Error("sign announcement", "key", key, "err", err)
		return
	}
	g.seen.add(wire.AnnouncementID(s), now)
	g.hold(ctx, key, s, a, g.id)
	if raw, err := proto.Marshal(s); err == nil {
		ctx.Send(g.store, &saveAnnouncement{Key: key, Seq: a.Seq, Signed: raw})
	}
	g.log.Debug("announcing", "key", key, "seq", a.Seq)
	g.relay(ctx, s, wire.AnnouncementID(s), defaultTTL, wire.NodeID{})
}

// sameBody reports whether two announcements say the same, whatever their
// seq and timestamp.
func sameBody(a, b *wire.Announcement) bool {
	x, y := proto.Clone(a).(*wire.Announcement), proto.Clone(b).(*wire.Announcement)
	x.Seq, x.TimestampMs, y.Seq, y.TimestampMs = 0, 0, 0, 0
	return proto.Equal(x, y)
}
