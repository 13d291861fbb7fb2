// The gossip actor: its messages, its state, and its Receive, which takes
// in what the store held at start and holds each accepted announcement in
// its slot (one per origin, kind and repository). What it does with them
// is in the files beside this one: gossip_accept.go (announcements from
// peers), gossip_budget.go (byte budgets), gossip_tree.go (the push tree),
// gossip_reconcile.go (reconciliation), gossip_announce.go (our own
// announcements), gossip_seen.go (the seen window).

package actors

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Messages of the gossip actor.

// gossipSiblings tells gossip where the transport and sync are. Node
// spawns gossip first (both are given its PID), then them, then sends this.
type gossipSiblings struct{ Transport, Sync *actor.PID }

// gossipIn is a gossip frame a peer actor received. Handling it gives
// back one credit of the peer's reader (backpressure).
type gossipIn struct {
	From   wire.NodeID
	Gossip *wire.Gossip
	credit chan struct{}
}

// gossipRepair is an IHave, Graft, Prune or Reconcile frame a peer actor
// received. Handling it gives back one credit of the peer's reader.
type gossipRepair struct {
	From   wire.NodeID
	PID    *actor.PID
	Frame  *wire.Frame
	credit chan struct{}
}

// announceRepos asks gossip to announce this node's repositories whose
// stored announcement no longer matches them (new repo, new refs). Asked
// (repo add), it replies true once the mirror's record is on its way to
// the store.
type announceRepos struct{ Repos []persist.Repo }

// mirrorUpdated tells gossip that our mirror of a repository now holds
// refs, so our inventory lists it.
type mirrorUpdated struct {
	ID   wire.RepoID
	Refs map[string]string
	// Bundle: the full bundle of Refs the fetch kept for the swarm (nil: none).
	Bundle *bundleAd
}

// mirrorRemoved tells gossip that a repository was removed here: it
// leaves our inventory, and if we created it, we stop announcing it.
type mirrorRemoved struct{ ID wire.RepoID }

// countCopies asks how many copies of a message arrived within the seen
// window (1 = no duplicates; 0 = unknown). Reply: int. For measurements.
type countCopies struct{ ID [32]byte }

// antiEntropy is the gossip interval's tick: reconcile with one random peer.
type antiEntropy struct{}

// gossipPeerCount asks how many peers gossip keeps state for. Reply:
// gossipPeers. For tests.
type gossipPeerCount struct{}

// gossipPeers is what gossip keeps per peer: connected ones, ones whose
// frames came before their peerConnected, and strikes (of connected
// peers, and of peers gone for less than BanFor).
type gossipPeers struct{ Peers, Early, Strikes int }

// graftDue: the message IDs announced to us (IHave) that we asked to wait
// for are due; ask for the ones still missing.
type graftDue struct {
	IDs   [][32]byte
	timer int
}

// flushIHave: send the message IDs collected for lazy peers.
type flushIHave struct{ timer int }

// gossipLoaded carries what the store held at start: the announcements,
// the repositories created here, and those we mirror.
type gossipLoaded struct {
	raw      [][]byte
	local    []repoState
	mirrored []repoSummary
}

// gossipStats asks for gossip's counters and limits. Reply: GossipStats.
type gossipStats struct{}

// GossipStats is what gossip holds and what it dropped, and why.
type GossipStats struct {
	Held      int              `json:"held"`       // announcement slots held
	HeldBytes int              `json:"held_bytes"` // their encoded size
	Dropped   map[string]int64 `json:"dropped"`    // per reason, since start
	// Since start: announcements that arrived from peers (copies
	// included), copies of one already seen, new ones accepted per kind
	// (node, repo, inventory), and copies of accepted ones pushed whole
	// to other peers (eager links; lazy ones get message IDs).
	Received   int64            `json:"received"`
	Duplicates int64            `json:"duplicates"`
	Accepted   map[string]int64 `json:"accepted"`
	Relayed    int64            `json:"relayed"`
	// Peers pushed whole announcements (the tree); the others get message IDs.
	EagerPeers int `json:"eager_peers"`
	// GraftWaitMs: how long an announced message is waited for before it
	// is asked for, adapted to how late eager pushes come.
	GraftWaitMs int64 `json:"graft_wait_ms"`
	// StoreWaits: frames whose reader credit gossip kept because the
	// store was behind its writes (the peer waited; nothing dropped).
	StoreWaits int64 `json:"store_waits"`
	// Valid identity documents that differ from the one kept (the
	// latest 64): see gossip_identity.go.
	IdentityForks []IdentityFork `json:"identity_forks,omitempty"`
}

// Reasons an announcement is dropped or evicted (GossipStats.Dropped).
const (
	dropInvalid   = "invalid"            // bad signature or broken rule: counts against the sender
	dropFuture    = "future_timestamp"   // too far ahead of our clock: the author's fault, not the relay's
	dropStale     = "stale"              // we hold this one or a newer one
	dropEvicted   = "evicted_budget"     // pushed out to stay within the byte budgets
	dropCatchUp   = "catch_up_truncated" // not sent in a catch-up over its byte budget
	dropOverQuota = "over_budget"        // refused: no room within the byte budgets
	dropReconcile = "reconcile_rate"     // a peer's reconciliation step over the rate, not answered
)

const defaultTTL = 16 // hops a new announcement may travel

// held is the latest accepted announcement for one (origin, kind, repo):
// the few fields the index needs, and its encoded bytes (what is sent,
// stored and budgeted) while they are new. Once the store has them (the
// next gossip interval) only our own announcements keep their bytes in
// memory; the others are read back from the store when a peer is sent
// them (push), so that 100,000 held announcements cost a small index
// each, not their bytes too (TestGossip_heldMemoryPerEntry). They are
// decoded when their content is needed (signed, body): of our own
// announcements at any time, of others' only while raw is not nil (else
// read them with loadHeld, as push does).
type held struct {
	raw    []byte // the encoded SignedAnnouncement, or nil (in the store only); never modified: the store and sync are handed these bytes
	origin wire.NodeID
	seq    uint64
	ts     int64    // timestamp_ms: the oldest go first when a budget is full
	msgID  [32]byte // wire.AnnouncementID
	bytes  int      // len of the encoding
}

// size is what the budgets count: the encoded size.
func (h *held) size() int { return h.bytes }

// signed decodes the announcement; gossip encoded it, so it decodes.
func (h *held) signed() *wire.SignedAnnouncement {
	s := new(wire.SignedAnnouncement)
	_ = proto.Unmarshal(h.raw, s)
	return s
}

// id is the announcement's message ID (wire.AnnouncementID).
func (h *held) id() [32]byte { return h.msgID }

// body decodes the announcement's payload (verified when it arrived).
func (h *held) body() *wire.Announcement {
	a := new(wire.Announcement)
	_ = proto.Unmarshal(h.signed().GetPayload(), a)
	return a
}

// gossip verifies, deduplicates, stores and relays announcements along a
// push tree (eager peers get them whole, lazy peers their IDs), reconciles
// what it holds with its peers, announces this node's own state, and hands
// newly learned nodes to the transport.
type gossip struct {
	key      ed25519.PrivateKey
	id       wire.NodeID
	alias    string
	addrs    []string // dialable addresses for our NodeAnnouncement
	interval time.Duration
	store    *actor.PID
	log      *slog.Logger
	// The transport (dialNode, banNode, peerUseful) and sync
	// (repoAnnounced, inventorySeen): nil until gossipSiblings comes.
	// What gossip has for them before that waits in unsent, in order.
	transport, sync *actor.PID
	unsent          []unsent

	peers     map[wire.NodeID]*gossipPeer
	latest    map[string]*held
	byID      map[[32]byte]string      // message ID of each held announcement -> its key
	set       *wire.ReconcileSet       // the held items for reconciliation, as of setBuilt
	bySlot    []slotAt                 // the held slots' keys by slot ID, sorted; built with set
	missing   map[[32]byte]*missingMsg // announced to us by IHave, not received yet
	inventory map[wire.RepoID][32]byte // what our mirrors hold, for our InventoryAnnouncement
	bundles   map[wire.RepoID]bundleAd // full bundles kept for the swarm, listed with the inventory (sync_swarm.go)
	fetching  map[wire.RepoID]bundleAd // full bundles being fetched, whose checked pieces we serve (partial seeding)
	budget    heldBudget
	inMemory  []string // keys of others' announcements held with their bytes, until the store has them
	dropped   map[string]int64
	counted   GossipStats // Received, Duplicates, Accepted, Relayed
	catchUp   int         // bytes one peer is sent by reconciliation and grafts, per minute
	seen      *seenWindow
	strikes   map[wire.NodeID]int
	struckOff map[wire.NodeID]time.Time // peers with strikes that disconnected, and when
	// The kept identity document of each repository that has one beyond
	// version 1, and the forks seen (gossip_identity.go).
	identities map[wire.RepoID]*identityState
	forks      []IdentityFork
	cancel     cancelFunc
	flushing   bool               // a flushIHave is on its way
	timers     map[int]cancelFunc // graftDue and flushIHave on their way, cancelled on stop
	timerSeq   int
	early      map[*actor.PID]*gossipPeer // peers whose frames came before peerConnected
	ready      bool
	now        func() time.Time

	// setStale: latest changed since set was built, which took setCost
	// (gossip_reconcile.go).
	setStale bool
	setBuilt time.Time
	setCost  time.Duration
	backlog  storeBacklog // gossip's writes the store has not committed (gossip_backlog.go)

	graftWait          graftWait // how long an IHave waits for its message before a graft (gossip_graftwait.go)
	ihaveDelay, banFor time.Duration
}

// gossipPeer is what gossip knows of one connected peer: whether it is on
// our side of the push tree (eager: it gets whole announcements) or off it
// (lazy: it gets their message IDs), and its catch-up byte budget.
type gossipPeer struct {
	pid   *actor.PID
	eager bool
	// initial: our reconciliation on connect is out and unanswered. A
	// peer that already holds everything we hold is a redundant link:
	// it becomes lazy, so that the eager links form a tree.
	initial bool
	ihave   [][]byte // message IDs to send it, collected for IHaveDelay
	credit  float64  // catch-up bytes it may still be sent
	at      time.Time
	steps   float64 // reconciliation steps it may still ask of us
	stepsAt time.Time
	useful  bool // the transport was told it sent something new (peerUseful)
}

func (g *gossip) newPeer(pid *actor.PID) *gossipPeer {
	now := g.now()
	return &gossipPeer{pid: pid, eager: true, credit: float64(g.catchUp), at: now, steps: reconcileBurst, stepsAt: now}
}

func newGossip(cfg Config, key ed25519.PrivateKey, id wire.NodeID, addrs []string, store *actor.PID) *gossip {
	cfg = cfg.withDefaults()
	return &gossip{
		key: key, id: id, alias: cfg.Alias, addrs: addrs, interval: cfg.GossipInterval,
		store: store, log: cfg.Logger,
		peers: map[wire.NodeID]*gossipPeer{}, latest: map[string]*held{}, inventory: map[wire.RepoID][32]byte{}, bundles: map[wire.RepoID]bundleAd{}, fetching: map[wire.RepoID]bundleAd{},
		byID: map[[32]byte]string{}, missing: map[[32]byte]*missingMsg{},
		timers: map[int]cancelFunc{}, early: map[*actor.PID]*gossipPeer{},
		graftWait: newGraftWait(cfg.GraftTimeout, cfg.GraftTimeoutMax), ihaveDelay: cfg.IHaveDelay, banFor: cfg.BanFor,
		budget:  heldBudget{total: cfg.MaxHeldBytes, perOrigin: cfg.MaxHeldBytesPerOrigin, origins: map[wire.NodeID]originHeld{}},
		dropped: map[string]int64{}, counted: GossipStats{Accepted: map[string]int64{}}, catchUp: cfg.MaxCatchUpBytes,
		seen: newSeenWindow(cfg.SeenFor, seenMax), strikes: map[wire.NodeID]int{}, struckOff: map[wire.NodeID]time.Time{}, now: time.Now,
		identities: map[wire.RepoID]*identityState{},
	}
}

func (g *gossip) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		askFor(ctx, g.store, &loadAnnouncements{}, func(raw [][]byte, err error) {
			if err != nil {
				g.log.Error("load announcements", "err", err)
			}
			// Our own repositories whole, the mirrored ones in short.
			askFor(ctx, g.store, &loadRepos{Filter: persist.FilterLocal}, func(local []repoState, err error) {
				if err != nil {
					g.log.Error("load repositories", "err", err)
				}
				askFor(ctx, g.store, &loadRepoSummaries{Mirrored: true}, func(mirrored []repoSummary, err error) {
					if err != nil {
						g.log.Error("load repositories", "err", err)
					}
					ctx.Send(ctx.Self(), &gossipLoaded{raw: raw, local: local, mirrored: mirrored})
				})
			})
		})
	case *gossipSiblings:
		g.transport, g.sync = m.Transport, m.Sync
		for _, u := range g.unsent {
			if u.toSync {
				ctx.Send(g.sync, u.msg)
			} else {
				ctx.Send(g.transport, u.msg)
			}
		}
		g.unsent = nil
	case *gossipLoaded:
		g.load(ctx, m)
	case *ownAddrs: // from reach: the addresses confirmed by dial-back
		g.addrs = m.Addrs
		if g.ready {
			g.announceNode(ctx)
		}
	case *peerConnected:
		// Its first frames may have come before this (the peer actor and
		// the transport race to us): the peer they made is the one.
		p := g.early[m.PID]
		if p == nil {
			p = g.newPeer(m.PID)
		}
		delete(g.early, m.PID)
		g.peers[m.ID] = p
		// One side starts the reconciliation (the smaller ID, as both
		// agree without talking); the other answers.
		if g.id.String() < m.ID.String() {
			p.initial = true
			ctx.Send(m.PID, &sendFrame{Frame: reconcileFrame(g.reconcileSet().Start())})
		}
	case *gossipPeerCount:
		ctx.Respond(gossipPeers{Peers: len(g.peers), Early: len(g.early), Strikes: len(g.strikes)})
	case *gossipStats:
		ctx.Respond(GossipStats{Held: len(g.latest), HeldBytes: g.budget.sum, Dropped: maps.Clone(g.dropped),
			Received: g.counted.Received, Duplicates: g.counted.Duplicates, Accepted: maps.Clone(g.counted.Accepted), Relayed: g.counted.Relayed,
			EagerPeers: g.eagerPeers(), GraftWaitMs: g.graftWait.wait().Milliseconds(), StoreWaits: g.backlog.held,
			IdentityForks: slices.Clone(g.forks)})
	case *peerDisconnected:
		delete(g.early, m.PID)
		if p := g.peers[m.ID]; p != nil && p.pid == m.PID {
			delete(g.peers, m.ID)
			if g.strikes[m.ID] > 0 {
				g.struckOff[m.ID] = g.now()
			}
		}
	case *gossipIn:
		g.receive(ctx, m)
		g.doneWith(m.credit) // gossip_backlog.go: kept while the store is behind
		if len(g.inMemory) >= maxInMemory {
			g.dropStored() // a flood: let go of the bytes the store has, now
		}
	case *gossipRepair:
		g.repair(ctx, m)
		releaseCredit(m.credit)
	case *graftDue:
		delete(g.timers, m.timer)
		g.graft(ctx, m.IDs)
	case *flushIHave:
		delete(g.timers, m.timer)
		g.flushing = false
		g.flushIHave(ctx)
	case *changeIdentity:
		g.changeIdentity(ctx, m)
	case *signIdentity:
		g.signIdentity(ctx, m)
	case *RotateKey:
		g.rotateKey(ctx, m)
	case *countCopies:
		ctx.Respond(g.seen.copies(m.ID))
	case *announceRepos:
		for _, r := range m.Repos {
			g.announceRepo(ctx, r)
		}
		g.announceInventory(ctx)
		if ctx.Sender() != nil {
			// repo add waits: the mirror's record went to the store
			// before this reply, so whatever the reply leads to finds it.
			ctx.Respond(true)
		}
	case *mirrorUpdated:
		g.inventory[m.ID] = wire.RefsHash(m.Refs)
		if m.Bundle != nil {
			g.keptBundle(m.ID, *m.Bundle)
		}
		g.announceInventory(ctx)
	case *bundleKept:
		g.keptBundle(m.ID, m.Ad)
		g.announceInventory(ctx)
	case *bundleFetching:
		if m.Stop {
			delete(g.fetching, m.ID)
		} else {
			g.fetching[m.ID] = m.Ad
		}
		g.announceInventory(ctx)
	case *mirrorRemoved:
		delete(g.inventory, m.ID)
		delete(g.bundles, m.ID)
		key := slotKey(kindRepo, g.id, m.ID.String())
		if g.drop(key) != nil {
			ctx.Send(g.store, &deleteAnnouncement{Key: key})
		}
		g.announceInventory(ctx)
	case *antiEntropy:
		for pid, p := range g.early {
			if g.now().Sub(p.at) > time.Minute {
				delete(g.early, pid) // a connection the transport never used
			}
		}
		g.forgetStrikes()
		g.dropStored()
		g.announceNode(ctx)
		if len(g.peers) > 0 {
			ids := slices.Collect(maps.Keys(g.peers))
			p := g.peers[ids[rand.IntN(len(ids))]]
			ctx.Send(p.pid, &sendFrame{Frame: reconcileFrame(g.reconcileSet().Start())})
		}
	case *setInterval:
		g.setInterval(ctx, m.d)
	case *actor.Stopping:
		if g.cancel != nil {
			g.cancel()
		}
		for _, cancel := range g.timers {
			cancel()
		}
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		g.log.Debug("gossip: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// load takes in what the store held, announces what changed while the node
// was down, and starts the anti-entropy timer.
func (g *gossip) load(ctx actor.Context, m *gossipLoaded) {
	for _, raw := range m.raw {
		s := new(wire.SignedAnnouncement)
		if proto.Unmarshal(raw, s) != nil {
			continue
		}
		// Stored announcements were verified on arrival; the clock rule is
		// for arrivals, so check them as of long ago.
		a, origin, err := wire.OpenAnnouncement(s, g.now().Add(100*365*24*time.Hour))
		if err != nil {
			continue
		}
		key := announcementKey(a, origin)
		if h := g.latest[key]; h != nil && h.seq >= a.Seq {
			continue // a newer one arrived while we loaded
		}
		// Held as the store keeps it: those bytes decode to s, and are
		// not encoded again.
		if !g.holdEncoded(ctx, key, raw, wire.AnnouncementID(s), a, origin) {
			continue
		}
		if inv := a.GetInventory(); inv != nil && origin != g.id {
			g.toSync(ctx, inventoryOf(origin, inv))
		}
	}
	g.loadIdentities(ctx)
	g.ready = true
	g.announceNode(ctx)
	for _, r := range m.mirrored {
		if r.Mirrored && !r.Local {
			g.inventory[r.ID] = r.Mirror
		}
	}
	for _, r := range m.local {
		if r.Repo.Local {
			g.announceRepo(ctx, r.Repo)
		}
	}
	g.announceInventory(ctx)
	if g.interval > 0 {
		g.cancel = sendEvery(ctx, g.interval, &antiEntropy{})
	}
}

// hold puts an announcement into its slot within the byte budgets: an
// origin over its own budget loses its oldest slots (it can only push
// itself out); when the total is full, the origin holding the most bytes
// loses its oldest. Our own announcements are never evicted. It returns
// false when there is no room.
func (g *gossip) hold(ctx actor.Context, key string, s *wire.SignedAnnouncement, a *wire.Announcement, origin wire.NodeID) bool {
	raw, err := proto.Marshal(s)
	if err != nil {
		return false
	}
	return g.holdEncoded(ctx, key, raw, wire.AnnouncementID(s), a, origin)
}

// holdEncoded is hold of the announcement encoded as raw (kept, not
// copied: nothing may change it), whose message ID is id.
func (g *gossip) holdEncoded(ctx actor.Context, key string, raw []byte, id [32]byte, a *wire.Announcement, origin wire.NodeID) bool {
	size := len(raw)
	old := g.latest[key]
	if origin != g.id {
		if size > g.budget.perOrigin {
			g.dropped[dropOverQuota]++
			return false
		}
		for g.budget.used(origin)-oldSize(old)+size > g.budget.perOrigin {
			if !g.evictOldest(ctx, origin, key) {
				break
			}
		}
		for g.budget.sum-oldSize(old)+size > g.budget.total {
			victim := g.budget.largest(g.id)
			if victim.IsZero() || !g.evictOldest(ctx, victim, key) {
				g.dropped[dropOverQuota]++
				return false
			}
		}
	}
	if old != nil {
		g.budget.remove(old.origin, key, old.size())
		delete(g.byID, old.id())
	}
	g.latest[key] = &held{raw: raw, origin: origin, seq: a.Seq, ts: a.TimestampMs, msgID: id, bytes: size}
	g.byID[id] = key
	if origin != g.id {
		g.inMemory = append(g.inMemory, key)
	}
	g.setStale = true
	g.budget.add(origin, key, size)
	return true
}

// drop forgets the announcement held under key.
func (g *gossip) drop(key string) *held {
	h := g.latest[key]
	if h == nil {
		return nil
	}
	delete(g.latest, key)
	delete(g.byID, h.id())
	g.setStale = true
	g.budget.remove(h.origin, key, h.size())
	return h
}

// dropStored lets go of the bytes of others' announcements held since the
// last tick: the store has them by now (gossip sent them to it before
// anything that reads them back), and push reads them from there.
// After a load or a flood, that is many at once: the memory goes back to
// the system at once too, rather than over the minutes the runtime's
// scavenger takes (a node that learned 100,000 repositories idles at a
// resident set near what it holds).
func (g *gossip) dropStored() {
	for _, key := range g.inMemory {
		if h := g.latest[key]; h != nil && h.origin != g.id {
			h.raw = nil
		}
	}
	if len(g.inMemory) >= releaseAfter {
		go debug.FreeOSMemory()
	}
	g.inMemory = nil
}

// releaseAfter is how many announcements' bytes let go of at once make
// gossip return memory to the system (see dropStored); maxInMemory, how
// many new ones keep their bytes before the next gossip interval.
const (
	releaseAfter = 10_000
	maxInMemory  = 1024
)

// forgetStrikes forgets the strikes of peers gone for longer than a ban
// lasts (a peer that comes back within it keeps them), so that what
// gossip keeps per peer is bounded by the peers of the last BanFor, not
// every key that ever connected.
func (g *gossip) forgetStrikes() {
	for id, at := range g.struckOff {
		if g.peers[id] != nil {
			delete(g.struckOff, id) // back: its strikes count again
			continue
		}
		if g.now().Sub(at) >= g.banFor {
			delete(g.strikes, id)
			delete(g.struckOff, id)
		}
	}
	for id := range g.strikes {
		if g.peers[id] == nil && g.struckOff[id].IsZero() {
			g.struckOff[id] = g.now() // struck after it left (a frame in flight)
		}
	}
}

// maxUnsent bounds the messages that wait for gossipSiblings. Node sends
// it right after spawning sync and the transport, before a peer can have
// connected, so what waits is at most what load found in the store.
const maxUnsent = 10_000

// unsent is a message for the transport or sync from before gossip knew
// where they are.
type unsent struct {
	toSync bool
	msg    any
}

// toTransport sends the transport msg (dialNode, banNode, peerUseful).
func (g *gossip) toTransport(ctx actor.Context, msg any) {
	if g.transport == nil {
		g.keep(unsent{msg: msg})
		return
	}
	ctx.Send(g.transport, msg)
}

// toSync sends sync msg (repoAnnounced, inventorySeen).
func (g *gossip) toSync(ctx actor.Context, msg any) {
	if g.sync == nil {
		g.keep(unsent{toSync: true, msg: msg})
		return
	}
	ctx.Send(g.sync, msg)
}

// keep holds u until gossipSiblings comes.
func (g *gossip) keep(u unsent) {
	if len(g.unsent) >= maxUnsent {
		g.log.Warn("gossip: transport and sync not known yet; message dropped", "type", fmt.Sprintf("%T", u.msg))
		return
	}
	g.unsent = append(g.unsent, u)
}

// Kinds of announcement: the counters' names (GossipStats.Accepted) and
// the first part of a slot key.
const (
	kindNode      = "node"
	kindRepo      = "repo"
	kindInventory = "inventory"
)

// slotKey names the slot an announcement fills: one per origin and kind,
// and per repository (its did:repo form) for repository announcements:
// "node/<origin>", "repo/<origin>/<repo>", "inventory/<origin>",
// "identity/<origin>/<repo>". Gossip
// holds an announcement under it, the store saves it under it, and
// reconciliation names the slot on the wire by its hash (wire.SlotIDOf).
func slotKey(kind string, origin wire.NodeID, repo string) string {
	if kind == kindRepo || kind == kindIdentity {
		return kind + "/" + origin.String() + "/" + repo
	}
	return kind + "/" + origin.String()
}

// announcementKey is the slot key of an announcement from origin.
func announcementKey(a *wire.Announcement, origin wire.NodeID) string {
	switch b := a.Body.(type) {
	case *wire.Announcement_Repo:
		return slotKey(kindRepo, origin, b.Repo.RepoId)
	case *wire.Announcement_Inventory:
		return slotKey(kindInventory, origin, "")
	case *wire.Announcement_Identity:
		return slotKey(kindIdentity, origin, b.Identity.RepoId)
	default:
		return slotKey(kindNode, origin, "")
	}
}

func gossipFrame(s *wire.SignedAnnouncement, ttl uint32) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_Gossip{Gossip: &wire.Gossip{Announcement: s, Ttl: ttl}}}
}
