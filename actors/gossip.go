package actors

import (
	"cmp"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Messages of the gossip actor.

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
// stored announcement no longer matches them (new repo, new refs).
type announceRepos struct{ Repos []persist.Repo }

// mirrorUpdated tells gossip that our mirror of a repository now holds
// refs, so our inventory lists it.
type mirrorUpdated struct {
	ID   wire.RepoID
	Refs map[string]string
}

// mirrorRemoved tells gossip that a repository was removed here: it
// leaves our inventory, and if we created it, we stop announcing it.
type mirrorRemoved struct{ ID wire.RepoID }

// countCopies asks how many copies of a message arrived within the seen
// window (1 = no duplicates; 0 = unknown). Reply: int. For measurements.
type countCopies struct{ ID [32]byte }

// antiEntropy is the gossip interval's tick: reconcile with one random peer.
type antiEntropy struct{}

// graftDue: the message IDs announced to us (IHave) that we asked to wait
// for are due; ask for the ones still missing.
type graftDue struct {
	IDs   [][32]byte
	timer int
}

// flushIHave: send the message IDs collected for lazy peers.
type flushIHave struct{ timer int }

// gossipLoaded carries what the store held at start.
type gossipLoaded struct {
	raw   [][]byte
	repos []repoState
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

const (
	maxMissing = 10_000 // message IDs announced to us and not received, remembered at most
	// Reconciliation steps answered per peer: a burst, then per second.
	reconcileBurst = 64
	reconcileRate  = 4
	defaultTTL     = 16
	seenMax        = 100_000
	misbehaveMax   = 5 // invalid messages from one peer before it is banned
)

// held is the latest accepted announcement for one (origin, kind, repo).
type held struct {
	signed *wire.SignedAnnouncement
	body   *wire.Announcement
	origin wire.NodeID
	size   int // encoded size of signed: what the budgets count
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

	peers     map[wire.NodeID]*gossipPeer
	latest    map[string]*held
	byID      map[[32]byte]string // message ID of each held announcement -> its key
	set       *wire.ReconcileSet  // the held items for reconciliation; nil when latest changed
	bySlot    map[wire.SlotID]string
	missing   map[[32]byte]*missingMsg // announced to us by IHave, not received yet
	inventory map[wire.RepoID][32]byte // what our mirrors hold, for our InventoryAnnouncement
	budget    heldBudget
	dropped   map[string]int64
	counted   GossipStats // Received, Duplicates, Accepted, Relayed
	catchUp   int         // bytes one peer is sent by reconciliation and grafts, per minute
	seen      *seenWindow
	strikes   map[wire.NodeID]int
	cancel    cancelFunc
	flushing  bool               // a flushIHave is on its way
	timers    map[int]cancelFunc // graftDue and flushIHave on their way, cancelled on stop
	timerSeq  int
	early     map[*actor.PID]*gossipPeer // peers whose frames came before peerConnected
	ready     bool
	now       func() time.Time

	graftTimeout, ihaveDelay, banFor time.Duration
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

// missingMsg is a message ID peers announced to us (IHave), and who did,
// in order; grafted is how many of them we asked already.
type missingMsg struct {
	from    []wire.NodeID
	grafted int
}

func newGossip(cfg Config, key ed25519.PrivateKey, id wire.NodeID, addrs []string, store *actor.PID) *gossip {
	cfg = cfg.withDefaults()
	return &gossip{
		key: key, id: id, alias: cfg.Alias, addrs: addrs, interval: cfg.GossipInterval,
		store: store, log: cfg.Logger,
		peers: map[wire.NodeID]*gossipPeer{}, latest: map[string]*held{}, inventory: map[wire.RepoID][32]byte{},
		byID: map[[32]byte]string{}, missing: map[[32]byte]*missingMsg{},
		timers: map[int]cancelFunc{}, early: map[*actor.PID]*gossipPeer{},
		graftTimeout: cfg.GraftTimeout, ihaveDelay: cfg.IHaveDelay, banFor: cfg.BanFor,
		budget:  heldBudget{total: cfg.MaxHeldBytes, perOrigin: cfg.MaxHeldBytesPerOrigin, used: map[wire.NodeID]int{}, keys: map[wire.NodeID]map[string]bool{}},
		dropped: map[string]int64{}, counted: GossipStats{Accepted: map[string]int64{}}, catchUp: cfg.MaxCatchUpBytes,
		seen: newSeenWindow(cfg.SeenFor, seenMax), strikes: map[wire.NodeID]int{}, now: time.Now,
	}
}

func (g *gossip) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		ask(ctx, g.store, loadAnnouncements{}, func(raw any, err error) {
			if err != nil {
				g.log.Error("load announcements", "err", err)
				raw = [][]byte(nil)
			}
			ask(ctx, g.store, loadRepos{}, func(res any, err error) {
				var repos []repoState
				if err == nil {
					repos = res.([]repoState)
				}
				ctx.Send(ctx.Self(), &gossipLoaded{raw: raw.([][]byte), repos: repos})
			})
		})
	case *gossipLoaded:
		g.load(ctx, m)
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
	case *gossipStats:
		ctx.Respond(GossipStats{Held: len(g.latest), HeldBytes: g.budget.sum, Dropped: maps.Clone(g.dropped),
			Received: g.counted.Received, Duplicates: g.counted.Duplicates, Accepted: maps.Clone(g.counted.Accepted), Relayed: g.counted.Relayed,
			EagerPeers: g.eagerPeers()})
	case *peerDisconnected:
		delete(g.early, m.PID)
		if p := g.peers[m.ID]; p != nil && p.pid == m.PID {
			delete(g.peers, m.ID)
		}
	case *gossipIn:
		g.receive(ctx, m)
		releaseCredit(m.credit)
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
	case *countCopies:
		ctx.Respond(g.seen.copies(m.ID))
	case *announceRepos:
		for _, r := range m.Repos {
			g.announceRepo(ctx, r)
		}
		g.announceInventory(ctx)
	case *mirrorUpdated:
		g.inventory[m.ID] = wire.RefsHash(m.Refs)
		g.announceInventory(ctx)
	case *mirrorRemoved:
		delete(g.inventory, m.ID)
		key := "repo/" + g.id.String() + "/" + m.ID.String()
		if g.drop(key) != nil {
			ctx.Send(g.store, deleteAnnouncement{Key: key})
		}
		g.announceInventory(ctx)
	case *antiEntropy:
		for pid, p := range g.early {
			if g.now().Sub(p.at) > time.Minute {
				delete(g.early, pid) // a connection the transport never used
			}
		}
		g.announceNode(ctx)
		if len(g.peers) > 0 {
			ids := slices.Collect(maps.Keys(g.peers))
			p := g.peers[ids[rand.IntN(len(ids))]]
			ctx.Send(p.pid, &sendFrame{Frame: reconcileFrame(g.reconcileSet().Start())})
		}
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
		if h := g.latest[key]; h != nil && h.body.Seq >= a.Seq {
			continue // a newer one arrived while we loaded
		}
		if !g.hold(ctx, key, s, a, origin) {
			continue
		}
		if inv := a.GetInventory(); inv != nil && origin != g.id {
			ctx.Send(ctx.Parent(), inventoryOf(origin, inv))
		}
	}
	g.ready = true
	g.announceNode(ctx)
	for _, r := range m.repos {
		if r.Mirror.OK && len(r.Mirror.Mirror.Refs) > 0 && !r.Repo.Local {
			g.inventory[r.Repo.ID] = wire.RefsHash(r.Mirror.Mirror.Refs)
		}
		if r.Repo.Local {
			g.announceRepo(ctx, r.Repo)
		}
	}
	g.announceInventory(ctx)
	if g.interval > 0 {
		g.cancel = sendEvery(ctx, g.interval, &antiEntropy{})
	}
}

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
			p.eager = false
			ctx.Send(p.pid, &sendFrame{Frame: &wire.Frame{Body: &wire.Frame_Prune{Prune: &wire.Prune{}}}})
		}
		return
	}
	g.seen.add(id, g.now())
	delete(g.missing, id)
	if origin == g.id {
		return // our own, back from a relay
	}
	key := announcementKey(a, origin)
	h := g.latest[key]
	if h != nil && a.Seq <= h.body.Seq {
		g.dropped[dropStale]++
		return // stale: we hold this one or a newer one
	}
	if !g.accept(ctx, key, s, a, origin) {
		return
	}
	g.counted.Accepted[announcementKind(a)]++
	if p := g.peers[m.From]; p != nil && !p.useful {
		p.useful = true // a full inbound table closes idle connections first
		ctx.Send(ctx.Parent(), &peerUseful{ID: m.From})
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
	raw, err := proto.Marshal(s)
	if err != nil {
		return false
	}
	ctx.Send(g.store, saveAnnouncement{Key: key, Seq: a.Seq, Signed: raw})
	switch b := a.Body.(type) {
	case *wire.Announcement_Node:
		node := persist.Node{ID: origin, Alias: b.Node.Alias, Addresses: b.Node.Addresses, LastSeen: g.now().UTC()}
		ctx.Send(g.store, saveNode{Node: node})
		for _, addr := range b.Node.Addresses {
			ctx.Send(ctx.Parent(), &dialNode{ID: origin, Alias: b.Node.Alias, Addr: addr, Discovered: true})
		}
	case *wire.Announcement_Repo:
		r := b.Repo
		id, _ := wire.ParseRepoID(r.RepoId) // checked by OpenAnnouncement
		repo := persist.Repo{
			ID: id, Name: r.Name, Description: r.Description, Creator: origin,
			RootCommit: r.RootCommit, DefaultBranch: r.DefaultBranch,
			Refs: wire.RefsToMap(r.Refs), Seq: a.Seq, UpdatedAt: time.UnixMilli(a.TimestampMs).UTC(),
		}
		ctx.Send(g.store, learnRepo{Repo: repo})
		ctx.Send(ctx.Parent(), &repoAnnounced{Repo: repo, Signed: raw})
		g.log.Info("repository announced", "repo", id, "name", wire.SafeText(r.Name), "creator", origin, "refs", len(r.Refs))
	case *wire.Announcement_Inventory:
		ctx.Send(ctx.Parent(), inventoryOf(origin, b.Inventory))
	}
	return true
}

// announcementKind names an announcement's kind for the counters.
func announcementKind(a *wire.Announcement) string {
	switch a.Body.(type) {
	case *wire.Announcement_Node:
		return "node"
	case *wire.Announcement_Repo:
		return "repo"
	case *wire.Announcement_Inventory:
		return "inventory"
	}
	return "other"
}

// hold puts an announcement into its slot within the byte budgets: an
// origin over its own budget loses its oldest slots (it can only push
// itself out); when the total is full, the origin holding the most bytes
// loses its oldest. Our own announcements are never evicted. It returns
// false when there is no room.
func (g *gossip) hold(ctx actor.Context, key string, s *wire.SignedAnnouncement, a *wire.Announcement, origin wire.NodeID) bool {
	size := proto.Size(s)
	old := g.latest[key]
	if origin != g.id {
		if size > g.budget.perOrigin {
			g.dropped[dropOverQuota]++
			return false
		}
		for g.budget.used[origin]-oldSize(old)+size > g.budget.perOrigin {
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
		g.budget.remove(old.origin, key, old.size)
		delete(g.byID, wire.AnnouncementID(old.signed))
	}
	g.latest[key] = &held{signed: s, body: a, origin: origin, size: size}
	g.byID[wire.AnnouncementID(s)] = key
	g.set = nil
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
	delete(g.byID, wire.AnnouncementID(h.signed))
	g.set = nil
	g.budget.remove(h.origin, key, h.size)
	return h
}

func oldSize(h *held) int {
	if h == nil {
		return 0
	}
	return h.size
}

// evictOldest drops origin's oldest held announcement other than keep.
func (g *gossip) evictOldest(ctx actor.Context, origin wire.NodeID, keep string) bool {
	var victim string
	var oldest int64
	for key := range g.budget.keys[origin] {
		if h := g.latest[key]; key != keep && h != nil && (victim == "" || h.body.TimestampMs < oldest) {
			victim, oldest = key, h.body.TimestampMs
		}
	}
	if victim == "" {
		return false
	}
	h := g.drop(victim)
	g.dropped[dropEvicted]++
	ctx.Send(g.store, deleteAnnouncement{Key: victim})
	if r := h.body.GetRepo(); r != nil {
		if id, err := wire.ParseRepoID(r.RepoId); err == nil {
			ctx.Send(g.store, forgetRepo{ID: id})
		}
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
		return cmp.Compare(b.body.TimestampMs, a.body.TimestampMs)
	})
	// The budget refills at catchUp bytes a minute, up to catchUp.
	now := g.now()
	p.credit = min(float64(g.catchUp), p.credit+now.Sub(p.at).Minutes()*float64(g.catchUp))
	p.at = now
	frames := make([]*wire.Frame, 0, len(all))
	for _, h := range all {
		if float64(h.size) > p.credit {
			g.dropped[dropCatchUp]++
			continue
		}
		p.credit -= float64(h.size)
		frames = append(frames, gossipFrame(h.signed, ttl))
	}
	if len(frames) > 0 {
		ctx.Send(p.pid, &sendFrames{Frames: frames})
	}
}

// heldBudget counts the bytes of held announcements, per origin and in total.
type heldBudget struct {
	total, perOrigin int
	sum              int
	used             map[wire.NodeID]int
	keys             map[wire.NodeID]map[string]bool
}

func (b *heldBudget) add(origin wire.NodeID, key string, size int) {
	b.sum += size
	b.used[origin] += size
	if b.keys[origin] == nil {
		b.keys[origin] = map[string]bool{}
	}
	b.keys[origin][key] = true
}

func (b *heldBudget) remove(origin wire.NodeID, key string, size int) {
	b.sum -= size
	b.used[origin] -= size
	delete(b.keys[origin], key)
	if len(b.keys[origin]) == 0 {
		delete(b.keys, origin)
		delete(b.used, origin)
	}
}

// largest is the origin holding the most bytes, never self.
func (b *heldBudget) largest(self wire.NodeID) wire.NodeID {
	var best wire.NodeID
	most := -1
	for origin, n := range b.used {
		if origin != self && n > most {
			best, most = origin, n
		}
	}
	return best
}

// strike counts an invalid message against the peer that sent it; past
// misbehaveMax the transport drops and bans it.
func (g *gossip) strike(ctx actor.Context, from wire.NodeID, why error) {
	g.strikes[from]++
	g.log.Warn("invalid gossip dropped", "peer", from, "strikes", g.strikes[from], "err", why)
	if g.strikes[from] >= misbehaveMax {
		delete(g.strikes, from)
		ctx.Send(ctx.Parent(), &banNode{ID: from, For: g.banFor, Reason: "too many invalid announcements"})
	}
}

// relay pushes a new announcement along the tree: whole to eager peers,
// its message ID to lazy ones (batched for IHaveDelay), never back to
// the peer it came from. It returns how many whole copies it sent.
func (g *gossip) relay(ctx actor.Context, s *wire.SignedAnnouncement, id [32]byte, ttl uint32, except wire.NodeID) (sent int) {
	f := gossipFrame(s, ttl)
	for pid, p := range g.peers {
		switch {
		case pid == except:
		case p.eager:
			ctx.Send(p.pid, &sendFrame{Frame: f})
			sent++
		default:
			p.ihave = append(p.ihave, id[:])
			if !g.flushing {
				g.flushing = true
				g.timerSeq++
				g.timers[g.timerSeq] = sendAfter(ctx, g.ihaveDelay, &flushIHave{timer: g.timerSeq})
			}
		}
	}
	return sent
}

func (g *gossip) flushIHave(ctx actor.Context) {
	for _, p := range g.peers {
		for ids := range slices.Chunk(p.ihave, wire.MaxIHaveIDs) {
			ctx.Send(p.pid, &sendFrame{Frame: &wire.Frame{Body: &wire.Frame_Ihave{Ihave: &wire.IHave{Ids: ids}}}})
		}
		p.ihave = nil
	}
}

// repair handles the frames that keep the tree and the held sets whole:
// IHave, Graft, Prune and Reconcile.
func (g *gossip) repair(ctx actor.Context, m *gossipRepair) {
	p := g.peers[m.From]
	if p == nil || p.pid != m.PID {
		// Not connected yet as far as we know: the transport's
		// peerConnected may still be on its way.
		if p = g.early[m.PID]; p == nil {
			if len(g.early) >= 256 {
				return
			}
			p = g.newPeer(m.PID)
			g.early[m.PID] = p
		}
	}
	var err error
	switch b := m.Frame.Body.(type) {
	case *wire.Frame_Ihave:
		if err = wire.CheckIHave(b.Ihave); err == nil {
			g.announced(ctx, m.From, b.Ihave.Ids)
		}
	case *wire.Frame_Graft:
		if err = wire.CheckGraft(b.Graft); err == nil {
			p.eager = true
			var keys []string
			for _, id := range b.Graft.Ids {
				if key, ok := g.byID[[32]byte(id)]; ok {
					keys = append(keys, key)
				}
			}
			g.push(ctx, p, keys, defaultTTL)
		}
	case *wire.Frame_Prune:
		p.eager = false
	case *wire.Frame_Reconcile:
		if err = wire.CheckReconcile(b.Reconcile); err == nil && g.takeStep(p) {
			g.reconcile(ctx, m.From, p, b.Reconcile)
		}
	}
	if err != nil {
		ctx.Send(p.pid, &closePeer{Code: wire.ErrorCode_ERROR_PROTOCOL, Reason: err.Error()})
	}
}

// announced notes message IDs a peer has (IHave) that we have not received,
// and asks for them (graft) if they do not arrive within GraftTimeout.
func (g *gossip) announced(ctx actor.Context, from wire.NodeID, ids [][]byte) {
	var due [][32]byte
	for _, b := range ids {
		id := [32]byte(b)
		if _, held := g.byID[id]; held || g.seen.copies(id) > 0 {
			continue
		}
		if m := g.missing[id]; m != nil {
			if len(m.from) < 8 && !slices.Contains(m.from, from) {
				m.from = append(m.from, from)
			}
			continue
		}
		if len(g.missing) >= maxMissing {
			continue
		}
		g.missing[id] = &missingMsg{from: []wire.NodeID{from}}
		due = append(due, id)
	}
	if len(due) > 0 {
		g.after(ctx, g.graftTimeout, due)
	}
}

// graft asks for the announced messages still missing, each from the next
// peer that announced it, and makes that link eager: the tree repairs
// itself where an eager push did not come. A message announced by more
// peers is asked for again after half the timeout.
func (g *gossip) graft(ctx actor.Context, ids [][32]byte) {
	ask := map[wire.NodeID][][]byte{}
	var again [][32]byte
	for _, id := range ids {
		m := g.missing[id]
		if m == nil {
			continue
		}
		for m.grafted < len(m.from) && g.peers[m.from[m.grafted]] == nil {
			m.grafted++
		}
		if m.grafted == len(m.from) {
			delete(g.missing, id)
			continue
		}
		from := m.from[m.grafted]
		m.grafted++
		ask[from] = append(ask[from], id[:])
		again = append(again, id)
	}
	for from, want := range ask {
		p := g.peers[from]
		p.eager = true
		for chunk := range slices.Chunk(want, wire.MaxGraftIDs) {
			ctx.Send(p.pid, &sendFrame{Frame: &wire.Frame{Body: &wire.Frame_Graft{Graft: &wire.Graft{Ids: chunk}}}})
		}
	}
	if len(again) > 0 {
		g.after(ctx, g.graftTimeout/2, again)
	}
}

// after sends gossip a graftDue for ids after d.
func (g *gossip) after(ctx actor.Context, d time.Duration, ids [][32]byte) {
	g.timerSeq++
	g.timers[g.timerSeq] = sendAfter(ctx, d, &graftDue{IDs: ids, timer: g.timerSeq})
}

func (g *gossip) newPeer(pid *actor.PID) *gossipPeer {
	now := g.now()
	return &gossipPeer{pid: pid, eager: true, credit: float64(g.catchUp), at: now, steps: reconcileBurst, stepsAt: now}
}

// takeStep reports whether p may have one more reconciliation step
// answered: each costs a pass over what we hold, and an honest peer needs
// a handful per gossip interval. Past the rate the step is dropped; the
// next anti-entropy round starts over.
func (g *gossip) takeStep(p *gossipPeer) bool {
	now := g.now()
	p.steps = min(reconcileBurst, p.steps+now.Sub(p.stepsAt).Seconds()*reconcileRate)
	p.stepsAt = now
	if p.steps < 1 {
		g.dropped[dropReconcile]++
		return false
	}
	p.steps--
	return true
}

// reconcile answers one step of a reconciliation: it sends the peer what
// it lacks or holds older, and the next step, if any.
func (g *gossip) reconcile(ctx actor.Context, from wire.NodeID, p *gossipPeer, in *wire.Reconcile) {
	set := g.reconcileSet()
	rep := set.Respond(in)
	if p.initial {
		p.initial = false
		inSync := len(in.Ranges) == 0 && len(in.Want) == 0
		if inSync && p.eager && g.eagerPeers() > 1 {
			p.eager = false
			ctx.Send(p.pid, &sendFrame{Frame: &wire.Frame{Body: &wire.Frame_Prune{Prune: &wire.Prune{}}}})
		}
	}
	keys := make([]string, 0, len(rep.Send))
	for _, slot := range rep.Send {
		if key, ok := g.bySlot[slot]; ok {
			keys = append(keys, key)
		}
	}
	g.push(ctx, p, keys, defaultTTL)
	if rep.Message != nil {
		ctx.Send(p.pid, &sendFrame{Frame: reconcileFrame(rep.Message)})
	}
	g.log.Debug("reconcile step", "peer", from, "ranges_in", len(in.Ranges), "want_in", len(in.Want), "sent", len(keys))
}

// reconcileSet is the held set as reconciliation sees it, rebuilt after a change.
func (g *gossip) reconcileSet() *wire.ReconcileSet {
	if g.set == nil {
		items := make([]wire.SlotItem, 0, len(g.latest))
		g.bySlot = make(map[wire.SlotID]string, len(g.latest))
		for key, h := range g.latest {
			slot := wire.SlotIDOf(key)
			g.bySlot[slot] = key
			items = append(items, wire.SlotItem{Slot: slot, Seq: h.body.Seq})
		}
		g.set = wire.NewReconcileSet(items)
	}
	return g.set
}

func (g *gossip) eagerPeers() int {
	n := 0
	for _, p := range g.peers {
		if p.eager {
			n++
		}
	}
	return n
}

func reconcileFrame(m *wire.Reconcile) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_Reconcile{Reconcile: m}}
}

// announceNode signs a NodeAnnouncement when ours changed (or we have none).
func (g *gossip) announceNode(ctx actor.Context) {
	body := &wire.NodeAnnouncement{Alias: g.alias, Addresses: g.addrs, Version: Version}
	g.announce(ctx, "node/"+g.id.String(), &wire.Announcement{Body: &wire.Announcement_Node{Node: body}})
}

// announceRepo signs a RepoAnnouncement for one of our repositories when it
// differs from the one we last signed.
func (g *gossip) announceRepo(ctx actor.Context, r persist.Repo) {
	if !g.ready || !r.Local {
		return
	}
	if r.Creator != g.id {
		// Its ID binds the key it was added with (before `auth init --force`).
		g.log.Warn("not announcing a repository added under another identity; add it again",
			"repo", r.ID, "path", r.Path, "creator", r.Creator)
		return
	}
	body := &wire.RepoAnnouncement{
		RepoId: r.ID.String(), RootCommit: r.RootCommit, Name: r.Name, Description: r.Description,
		DefaultBranch: r.DefaultBranch, Refs: wire.RefsFromMap(r.Refs),
	}
	key := "repo/" + g.id.String() + "/" + r.ID.String()
	g.announce(ctx, key, &wire.Announcement{Body: &wire.Announcement_Repo{Repo: body}})
	h := g.latest[key]
	if h == nil || !maps.Equal(wire.RefsToMap(h.body.GetRepo().GetRefs()), r.Refs) {
		return // not signed (the log says why)
	}
	// Our mirror holds exactly these refs (the watcher fetched them into
	// it first): record the signed announcement that proves it, and list
	// the repository in our inventory.
	raw, err := proto.Marshal(h.signed)
	if err != nil {
		return
	}
	ctx.Send(g.store, saveMirror{ID: r.ID, Mirror: persist.Mirror{
		Refs: r.Refs, Seq: h.body.Seq, Signed: raw, DefaultBranch: r.DefaultBranch, SyncedAt: g.now().UTC(),
	}})
	g.inventory[r.ID] = wire.RefsHash(r.Refs)
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
	}
	return m
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
		inv.Repos = append(inv.Repos, &wire.InventoryEntry{RepoId: id.String(), RefsHash: sum[:]})
	}
	if len(inv.Repos) == 0 {
		return
	}
	slices.SortFunc(inv.Repos, func(a, b *wire.InventoryEntry) int { return strings.Compare(a.RepoId, b.RepoId) })
	g.announce(ctx, "inventory/"+g.id.String(), &wire.Announcement{Body: &wire.Announcement_Inventory{Inventory: inv}})
}

// announce signs a (origin, seq, timestamp) around body unless the latest we
// hold under key already says the same, then stores and sends it.
// seq = max(previous+1, now in ms): strictly increasing, also across restarts
// (the previous one is stored), without a counter of its own.
func (g *gossip) announce(ctx actor.Context, key string, a *wire.Announcement) {
	prev := g.latest[key]
	a.Origin = g.id.String() // before comparing: the held one has it
	if prev != nil && sameBody(prev.body, a) {
		return
	}
	now := g.now()
	a.TimestampMs, a.Seq = now.UnixMilli(), uint64(now.UnixMilli())
	if prev != nil && prev.body.Seq >= a.Seq {
		a.Seq = prev.body.Seq + 1
	}
	s, err := wire.SignAnnouncement(g.key, a)
	if err != nil {
		g.log.Error("sign announcement", "key", key, "err", err)
		return
	}
	g.seen.add(wire.AnnouncementID(s), now)
	g.hold(ctx, key, s, a, g.id)
	if raw, err := proto.Marshal(s); err == nil {
		ctx.Send(g.store, saveAnnouncement{Key: key, Seq: a.Seq, Signed: raw})
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

// announcementKey names the slot an announcement fills: one per origin and
// kind, and per repository for repository announcements.
func announcementKey(a *wire.Announcement, origin wire.NodeID) string {
	switch b := a.Body.(type) {
	case *wire.Announcement_Repo:
		return "repo/" + origin.String() + "/" + b.Repo.RepoId
	case *wire.Announcement_Inventory:
		return "inventory/" + origin.String()
	default:
		return "node/" + origin.String()
	}
}

func gossipFrame(s *wire.SignedAnnouncement, ttl uint32) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_Gossip{Gossip: &wire.Gossip{Announcement: s, Ttl: ttl}}}
}

// seenWindow remembers message IDs for a sliding window of time, holding at
// most max of them (the oldest go first when full), and counts the copies
// of each that arrived.
type seenWindow struct {
	ttl   time.Duration
	max   int
	at    map[[32]byte]*seenEntry
	order [][32]byte // insertion order; order[head:] are live
	head  int
}

type seenEntry struct {
	at     time.Time
	copies int
}

func newSeenWindow(ttl time.Duration, max int) *seenWindow {
	return &seenWindow{ttl: ttl, max: max, at: map[[32]byte]*seenEntry{}}
}

// has reports whether id was seen within the window, counting the copy.
func (w *seenWindow) has(id [32]byte, now time.Time) bool {
	e, ok := w.at[id]
	if !ok || now.Sub(e.at) >= w.ttl {
		return false
	}
	e.copies++
	return true
}

func (w *seenWindow) copies(id [32]byte) int {
	if e, ok := w.at[id]; ok {
		return e.copies
	}
	return 0
}

func (w *seenWindow) add(id [32]byte, now time.Time) {
	w.expire(now)
	if _, ok := w.at[id]; ok {
		return
	}
	for len(w.at) >= w.max {
		w.pop()
	}
	w.at[id] = &seenEntry{at: now, copies: 1}
	w.order = append(w.order, id)
}

func (w *seenWindow) len() int { return len(w.at) }

func (w *seenWindow) expire(now time.Time) {
	for w.head < len(w.order) && now.Sub(w.at[w.order[w.head]].at) >= w.ttl {
		w.pop()
	}
}

func (w *seenWindow) pop() {
	delete(w.at, w.order[w.head])
	w.head++
	if w.head > len(w.order)/2 && w.head > 1024 {
		w.order = slices.Clone(w.order[w.head:])
		w.head = 0
	}
}
