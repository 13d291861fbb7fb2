package actors

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Messages of the sync actor.
type (
	// repoAnnounced: gossip accepted a creator's announcement of a
	// repository (and sent the store its record and the announcement
	// first, which a fetch reads when it starts).
	repoAnnounced struct{ Repo persist.Repo }
	// repoForgotten: gossip evicted the announcement of a learned
	// repository and the store forgot it, unless we mirror it.
	repoForgotten struct{ ID wire.RepoID }
	// inventorySeen: gossip accepted a node's inventory (repo -> RefsHash).
	inventorySeen struct {
		Origin wire.NodeID
		Repos  map[wire.RepoID][32]byte
		// Bundles: the full bundles the origin keeps for the swarm (nil: none).
		Bundles map[wire.RepoID]bundleAd
		// Fetching: the full bundles the origin is fetching and serves the
		// checked pieces of (partial seeding; nil: none).
		Fetching map[wire.RepoID]bundleAd
	}
	// syncNow asks for a sync of one repository; with Wait the reply
	// (nil, or an error) comes when the mirror holds the signed refs.
	syncNow struct {
		ID       wire.RepoID
		Wait     bool
		Timeout  time.Duration
		Progress *actor.PID
	}
	// syncStates asks what sync knows of the repositories IDs (of every
	// one when IDs is nil). Reply: map[wire.RepoID]syncView.
	syncStates struct{ IDs []wire.RepoID }
	// syncCounters asks for transfer totals. Reply: syncTotals.
	syncCounters struct{}
	// syncTick: the sync interval's tick; also a retry after a backoff.
	syncTick struct{}
	// scheduleNow: run the scheduler (once per burst of events).
	scheduleNow struct{}
	// repoChanged: the node changed a repository's local flags (follow,
	// clone); Repo is the stored record.
	repoChanged struct{ Repo persist.Repo }
	// repoRemoved: repo remove: stop fetching it and forget its mirror.
	repoRemoved struct{ ID wire.RepoID }
	// diskScan: the mirrors' and .part files' sizes on disk, measured at start.
	diskScan struct {
		mirrors, parts map[wire.RepoID]int64
		swarm          *swarmScan
	}
	// waitExpired: a waiting command's timeout.
	waitExpired struct {
		ID     wire.RepoID
		waiter *syncWaiter
	}
)

// syncView is what sync tells the node about one repository.
type syncView struct {
	Syncing     bool
	Bytes, Size int64
	Phase, Step string  // of the running fetch
	Percent     float64 // of its phase
	Seeders     []wire.NodeID
	LastError   string // why the last fetch failed, until one succeeds
	// Delegates (sync_delegates.go): the kept identity document (nil: the
	// creator alone), the other delegates' refs the mirror holds, and the
	// canonical refs last written.
	Identity     *wire.Identity
	DelegateRefs map[wire.NodeID]map[string]string
	Canonical    *persist.Canonical
}

// syncTotals are transfer counters since start.
type syncTotals struct {
	Fetching, Serving int
	BytesIn, BytesOut int64
	Counts            TransferCounts
	Swarms            []SwarmFetch
}

// TransferCounts count bundle transfers since start: fetched from peers
// and served to them, started, ended with a result, and failed (fetches
// per reason: "over_quota" refused for the mirror quota, "invalid" the
// seeder sent something that failed a check, "error" anything else);
// and requests for a bundle answered from the cache (hits) or built.
type TransferCounts struct {
	FetchesStarted int64            `json:"fetches_started"`
	FetchesDone    int64            `json:"fetches_done"`
	FetchesFailed  map[string]int64 `json:"fetches_failed"`
	ServesStarted  int64            `json:"serves_started"`
	ServesDone     int64            `json:"serves_done"`
	ServesFailed   int64            `json:"serves_failed"`
	CacheHits      int64            `json:"cache_hits"`
	CacheMisses    int64            `json:"cache_misses"`
}

// syncRepo is what sync tracks per repository it has to do with (ours,
// followed, mirrored, fetched, failed or removed): the repository in short
// (the records stay in the store and are read when a fetch starts) and
// what its fetches did. A repository sync knows only from gossip is a
// learnedRepo, smaller still, until it has to do with it; so that a node
// that learned 100,000 repositories keeps a couple of hundred bytes for
// each (TestSync_learnedMemoryPerRepo; the node: TestMemory_learnedRepos).
type syncRepo struct {
	repoSummary
	fetch     *syncFetch               // the running fetch; nil when none
	failures  map[wire.NodeID]*backoff // nil until a fetch fails
	waiters   []*syncWaiter
	lastError string
	size      int64  // bytes of the mirror on disk
	partSize  int64  // bytes of a .part file kept for a resume
	refused   uint64 // the seq of the signed state refused for the mirror quota
	starting  bool   // a fetch is being started (what it starts from is read)
	// dl: what sync keeps of a repository with an identity document or
	// other delegates' refs, or of one delegate's refs (sync_delegates.go);
	// nil for the rest.
	dl *delegation
}

// learnedRepo is a repository sync knows only as its creator announced
// it: not created here, not followed, not mirrored, no fetch started.
type learnedRepo struct {
	creator wire.NodeID
	seq     uint64
	refs    [32]byte // wire.RefsHash of the signed refs (never of none)
}

// syncFetch is a running fetch of a repository.
type syncFetch struct {
	pid      *actor.PID
	peer     wire.NodeID
	status   transferStatus
	statusAt time.Time
	rate     float64       // bytes per second, smoothed
	reserved int64         // bytes of the quota it reserved
	swarm    []wire.NodeID // a swarm fetch (sync_swarm.go): its seeders, peer the first
	// A swarm fetch's bundle, and the seeders sent to it while it runs
	// (partial holders that appeared; not counted in perPeer).
	swarmAd bundleAd
	joined  map[wire.NodeID]bool
}

// reserved is what r's running fetch reserved of the quota.
func (r *syncRepo) reserved() int64 {
	if r.fetch == nil {
		return 0
	}
	return r.fetch.reserved
}

// fetching reports whether pid is r's running fetch.
func (r *syncRepo) fetching(pid *actor.PID) bool { return r.fetch != nil && r.fetch.pid.Equal(pid) }

type backoff struct {
	attempts int
	until    time.Time
}

type syncWaiter struct {
	reply    func(any)
	progress *actor.PID
	cancel   cancelFunc
}

// behind reports whether the mirror lacks the signed refs.
func (r *syncRepo) behind() bool {
	if d := r.dl; d != nil && d.parent == nil && d.identity != nil && !d.identity.IsDelegate(r.Creator) {
		return false // the creator is no longer a delegate: its refs are not wanted
	}
	return !r.Local && r.HasRefs && r.Mirror != r.Refs
}

// syncer is the sync scheduler: it knows which repositories are behind and
// which peers can serve them, starts fetching transfer actors (bounded, with
// backoff per repository and peer: sync_schedule.go) within the mirror
// quota (sync_quota.go), spawns a serving transfer actor for each incoming
// request (sync_uploads.go), and decides when the bundle cache builds a
// bundle (sync_bundles.go; the cache itself is persist.BundleCache).
type syncer struct {
	cfg    Config
	store  *actor.PID
	gossip *actor.PID
	log    *slog.Logger

	repos       map[wire.RepoID]*syncRepo
	learned     map[wire.RepoID]learnedRepo // known from gossip only (see learnedRepo)
	peers       map[wire.NodeID]*actor.PID
	aliases     map[wire.NodeID]string // of connected peers that gave one (shown in progress)
	inventories map[wire.NodeID]map[wire.RepoID][32]byte
	fetches     int
	perPeer     map[wire.NodeID]int  // running fetches per seeder
	serving     map[string]serveSlot // serving transfer actors by PID id, until they end
	cache       persist.BundleCache
	building    map[persist.BundleKey]*persist.BundleBuild
	runCtx      context.Context // git work started here; cancelled in *actor.Stopping
	stopWork    context.CancelFunc
	upload      *rate.Limiter
	download    *rate.Limiter
	cancelTick  cancelFunc
	nextID      int
	ready       bool
	pending     bool // a scheduleNow is in the mailbox
	stopping    bool
	bytesIn     int64
	bytesOut    int64
	counts      TransferCounts
	key         ed25519.PrivateKey // signs the manifests of full bundles built here (sync_swarm.go)
	sw          swarmState
	partials    *partialSet   // bundles being fetched whose checked pieces we serve (transfer_swarm_partial.go)
	served      *servedPieces // which pieces we chose for whom asked us to (transfer_swarm_choose.go)
}

func newSyncer(cfg Config, store, gossip *actor.PID) *syncer {
	s := &syncer{
		cfg: cfg, store: store, gossip: gossip, log: cfg.Logger, partials: newPartialSet(), served: newServedPieces(),
		repos: map[wire.RepoID]*syncRepo{}, learned: map[wire.RepoID]learnedRepo{}, peers: map[wire.NodeID]*actor.PID{},
		inventories: map[wire.NodeID]map[wire.RepoID][32]byte{}, building: map[persist.BundleKey]*persist.BundleBuild{},
		serving: map[string]serveSlot{}, perPeer: map[wire.NodeID]int{}, counts: TransferCounts{FetchesFailed: map[string]int64{}},
	}
	s.upload, s.download = byteRate(cfg.MaxUploadRate), byteRate(cfg.MaxDownloadRate)
	s.cache = persist.NewBundleCache(cfg.Root, cfg.MaxCacheSize)
	s.runCtx, s.stopWork = cfg.workContext()
	return s
}

// byteRate is a limiter of bytes per second (nil when unlimited) whose
// burst is one chunk and which starts empty: the first chunk waits too.
func byteRate(perSecond int64) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	l := rate.NewLimiter(rate.Limit(perSecond), wire.MaxChunkData)
	l.AllowN(time.Now(), wire.MaxChunkData)
	return l
}

func (s *syncer) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		s.cancelTick = sendEvery(ctx, s.cfg.SyncInterval, &syncTick{})
		askFor(ctx, s.store, &loadRepoSummaries{}, func(sums []repoSummary, err error) {
			if err != nil {
				s.log.Error("sync: load repositories", "err", err)
				return
			}
			for _, sum := range sums {
				if sum.HasRefs && !sum.Local && !sum.Mirrored && !sum.Followed && !sum.Removed && !sum.Cloned && s.repos[sum.ID] == nil {
					s.learned[sum.ID] = learnedRepo{creator: sum.Creator, seq: sum.Seq, refs: sum.Refs}
					continue
				}
				r := s.repo(sum.ID)
				r.repoSummary = sum
				if r.dl != nil {
					// gossip's identityChanged came first: its records
					// are read again, now that the store has them all.
					s.loadDelegation(ctx, r)
				}
			}
			var ids []wire.RepoID
			for id, r := range s.repos {
				if !r.Local && r.Mirrored {
					ids = append(ids, id)
				}
			}
			root, cache := s.cfg.Root, s.cache
			asyncFor(ctx, s.cfg.WorkTimeout, func() (*diskScan, error) {
				// Before any fetch or build runs: what a crash left.
				persist.CleanTmp(root)
				cache.RemoveBuilds()
				sizes := map[wire.RepoID]int64{}
				for _, id := range ids {
					sizes[id], _ = persist.DiskUsage(persist.MirrorPath(root, id))
				}
				return &diskScan{mirrors: sizes, parts: persist.PartFiles(root), swarm: scanSwarm(root)}, nil
			}, func(m *diskScan, _ error) {
				if m == nil {
					m = &diskScan{}
				}
				for id, n := range m.mirrors {
					s.repo(id).size = n
				}
				if m.swarm != nil {
					s.swarmScanned(ctx, m.swarm)
				}
				s.checkParts(ctx, m.parts)
			})
		})
	case *repoAnnounced:
		s.announced(m.Repo)
		s.reschedule(ctx)
	case *repoForgotten:
		delete(s.learned, m.ID)
		if r := s.repos[m.ID]; r != nil && r.fetch == nil && r.dl == nil && !r.starting && !r.Local && !r.Mirrored && !r.Followed && !r.Cloned && len(r.waiters) == 0 {
			delete(s.repos, m.ID)
		}
	case *repoChanged:
		r := s.repo(m.Repo.ID)
		if m.Repo.Seq >= r.Seq || m.Repo.Local {
			r.setRepo(m.Repo)
			if r.dl != nil && m.Repo.DefaultBranch != "" {
				r.dl.branch = m.Repo.DefaultBranch
			}
		} else {
			r.setFlags(m.Repo)
		}
		r.refused = 0
		s.reschedule(ctx)
	case *repoRemoved:
		if r := s.known(m.ID); r != nil {
			if r.fetch != nil {
				ctx.Stop(r.fetch.pid) // its Terminated frees the slot
			}
			r.Mirror, r.Mirrored, r.size, r.partSize, r.refused, r.lastError = noRefs, false, 0, 0, 0, ""
			r.Removed, r.Followed, r.Cloned = true, false, false
			if r.dl != nil {
				r.dl.mirror = persist.Mirror{}
			}
			if r.Local {
				delete(s.repos, m.ID)
			}
		}
	case *identityChanged:
		s.identityChanged(ctx, m)
	case *delegateAnnounced:
		s.delegateAnnounced(ctx, m)
	case *inventorySeen:
		s.inventories[m.Origin] = m.Repos
		s.bundleAdsSeen(m.Origin, m.Bundles, m.Fetching)
		s.swarmJoin(ctx, m.Origin)
		s.swarmSwitch(ctx)
		s.reschedule(ctx)
	case *peerConnected:
		s.peers[m.ID] = m.PID
		if s.aliases == nil {
			s.aliases = map[wire.NodeID]string{}
		}
		if a := wire.OneLine(m.Hello.GetAlias()); a != "" {
			s.aliases[m.ID] = a
		} else {
			delete(s.aliases, m.ID)
		}
		s.swarmJoin(ctx, m.ID)
		s.reschedule(ctx)
	case *peerDisconnected:
		if s.peers[m.ID] == m.PID {
			delete(s.peers, m.ID)
			delete(s.aliases, m.ID)
		}
	case *syncTick:
		s.forgetFailures(time.Now())
		s.reschedule(ctx)
	case *scheduleNow:
		s.pending = false
		s.schedule(ctx)
	case *syncNow:
		s.syncNow(ctx, m)
	case *waitExpired:
		s.expire(m)
	case *syncStates:
		ctx.Respond(s.views(m.IDs))
	case *syncCounters:
		counts := s.counts
		counts.FetchesFailed = maps.Clone(s.counts.FetchesFailed)
		ctx.Respond(syncTotals{Fetching: s.fetches, Serving: s.uploads(wire.NodeID{}), BytesIn: s.bytesIn, BytesOut: s.bytesOut, Counts: counts, Swarms: s.swarmView()})
	case *streamIn:
		s.serve(ctx, m)
	case *bundleFor:
		s.bundleFor(ctx, m)
	case *bundleBuilt:
		s.built(m)
	case *transferStatus:
		s.progress(ctx, m)
	case *transferEnded:
		s.ended(ctx, m)
	case *reserveQuota:
		s.reserve(m)
	case *swarmSeederFailed:
		s.swarmSeederFailed(m)
	case *swarmUpdate:
		s.swarmUpdated(m)
	case *swarmServing:
		ctx.Send(s.gossip, &bundleFetching{ID: m.Repo, Ad: m.Ad, Stop: m.Stop})
	case *bundleKept:
		ctx.Send(s.gossip, m) // a manifest made for a bundle built here
	case *actor.Terminated:
		// Transfer actors do not stop themselves: sync stops each when its
		// transferEnded arrives. One that stops before that panicked: free
		// its slot.
		if s.stopping {
			return
		}
		if _, ok := s.serving[m.Who.Id]; ok {
			delete(s.serving, m.Who.Id)
			return
		}
		for _, r := range s.repos {
			if r.fetching(m.Who) {
				s.ended(ctx, &transferEnded{Repo: r.ID, Peer: r.fetch.peer, Err: errors.New("transfer failed")})
			}
			if r.dl == nil {
				continue
			}
			for d, dr := range r.dl.delegates {
				if dr.fetching(m.Who) {
					s.ended(ctx, &transferEnded{Repo: r.ID, Delegate: d, Peer: dr.fetch.peer, Err: errors.New("transfer failed")})
				}
			}
		}
	case *setInterval:
		s.setInterval(ctx, m.d)
	case *actor.Stopping:
		s.stopping = true
		s.stopWork()
		if s.cancelTick != nil {
			s.cancelTick()
		}
		for _, r := range s.repos {
			for _, w := range r.waiters {
				w.cancel()
			}
		}
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		s.log.Debug("sync: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// forgetFailures forgets the failed fetches from a seeder whose backoff
// ended over SyncBackoffMax ago: what sync keeps per repository and
// seeder is bounded by the seeders that failed lately, not by every key
// that ever served a bad bundle.
func (s *syncer) forgetFailures(now time.Time) {
	for _, r := range s.repos {
		for id, b := range r.failures {
			if now.Sub(b.until) > s.cfg.SyncBackoffMax {
				delete(r.failures, id)
			}
		}
		if len(r.failures) == 0 {
			r.failures = nil
		}
	}
}

// repo is what sync tracks of id, made when it knew nothing of it (or
// only that it was learned).
func (s *syncer) repo(id wire.RepoID) *syncRepo {
	r := s.repos[id]
	if r == nil {
		r = &syncRepo{repoSummary: repoSummary{ID: id, Mirror: noRefs}}
		if l, ok := s.learned[id]; ok {
			r.Creator, r.Seq, r.Refs, r.HasRefs = l.creator, l.seq, l.refs, true
			delete(s.learned, id)
		}
		s.repos[id] = r
	}
	return r
}

// known is what sync tracks of id, or nil when it knows nothing of it.
func (s *syncer) known(id wire.RepoID) *syncRepo {
	if _, ok := s.learned[id]; ok || s.repos[id] != nil {
		return s.repo(id)
	}
	return nil
}

// announced takes in a creator's announcement of a repository: its
// signed state (the local flags are ours).
func (s *syncer) announced(repo persist.Repo) {
	hash := wire.RefsHash(repo.Refs)
	if r := s.repos[repo.ID]; r != nil || len(repo.Refs) == 0 {
		r = s.repo(repo.ID)
		if r.Local {
			return // ours as a delegate (repo add --repo-id): our working copy's refs, not the creator's
		}
		if repo.Seq > r.Seq || !r.HasRefs {
			r.Creator, r.Seq, r.Refs, r.HasRefs = repo.Creator, repo.Seq, hash, len(repo.Refs) > 0
		}
		return
	}
	if l, ok := s.learned[repo.ID]; !ok || repo.Seq > l.seq {
		s.learned[repo.ID] = learnedRepo{creator: repo.Creator, seq: repo.Seq, refs: hash}
	}
}

func (s *syncer) progress(ctx actor.Context, m *transferStatus) {
	r := s.repos[m.Repo]
	if r == nil || r.fetch == nil {
		return
	}
	f, now := r.fetch, time.Now()
	if prev := f.status; prev.Peer == m.Peer && m.Bytes > prev.Bytes && !f.statusAt.IsZero() {
		if dt := now.Sub(f.statusAt).Seconds(); dt > 0 {
			inst := float64(m.Bytes-prev.Bytes) / dt
			if f.rate == 0 {
				f.rate = inst
			} else {
				f.rate = 0.7*f.rate + 0.3*inst // smoothed: chunks arrive in bursts
			}
		}
	}
	f.status, f.statusAt = *m, now
	s.notifyWaiters(ctx, r, s.progressOf(r))
}

// progressOf is the running fetch of r as a Progress event: with the
// seeder's alias, and the time left when bytes arrive at a known rate
// towards a known (or estimated) size.
func (s *syncer) progressOf(r *syncRepo) *Progress {
	m, rate := r.fetch.status, r.fetch.rate
	p := &Progress{Repo: m.Repo, Phase: m.Phase, Peer: m.Peer, PeerAlias: s.aliases[m.Peer], Bytes: m.Bytes, Size: m.Size,
		Estimated: m.Estimated, Rate: rate, Percent: m.Percent, Step: m.Step, Objects: m.Objects, ObjectsTotal: m.ObjectsTotal}
	if m.Phase == PhaseReceiving && m.Size > m.Bytes && rate > 0 {
		p.ETA = float64(m.Size-m.Bytes) / rate
	}
	return p
}

func (s *syncer) notifyWaiters(ctx actor.Context, r *syncRepo, p *Progress) {
	for _, w := range r.waiters {
		if w.progress != nil {
			ctx.Send(w.progress, p)
		}
	}
}

// syncNow starts a sync and, with Wait, answers when it is done.
func (s *syncer) syncNow(ctx actor.Context, m *syncNow) {
	reply := replier(ctx)
	r := s.known(m.ID)
	if r == nil || (!r.HasRefs && (r.dl == nil || len(r.dl.delegates) == 0)) {
		reply(fmt.Errorf("unknown repository %s; `menode repo list` shows the known ones", m.ID))
		return
	}
	if !s.repoBehind(r) {
		reply(true)
		return
	}
	if !s.wanted(r) {
		reply(fmt.Errorf("%s is not followed (removed, or this node seeds only followed repositories); run: menode repo follow --repo-id %s", m.ID, m.ID))
		return
	}
	// An explicit request forgets the backoff.
	for _, b := range r.failures {
		b.until = time.Time{}
	}
	if !m.Wait {
		reply(true)
		s.reschedule(ctx)
		return
	}
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = DefaultSyncTimeout
	}
	w := &syncWaiter{reply: reply, progress: m.Progress}
	w.cancel = sendAfter(ctx, timeout, &waitExpired{ID: m.ID, waiter: w})
	r.waiters = append(r.waiters, w)
	s.reschedule(ctx)
	if r.fetch != nil && w.progress != nil {
		ctx.Send(w.progress, s.progressOf(r))
	}
}

func (s *syncer) expire(m *waitExpired) {
	r := s.repos[m.ID]
	if r == nil {
		return
	}
	i := slices.Index(r.waiters, m.waiter)
	if i < 0 {
		return
	}
	r.waiters = slices.Delete(r.waiters, i, i+1)
	connected := 0
	seeders := s.seeders(r)
	for _, id := range seeders {
		if s.peers[id] != nil {
			connected++
		}
	}
	why := fmt.Sprintf("%d seeders known, %d connected", len(seeders), connected)
	if r.lastError != "" {
		why += "; last error: " + r.lastError
	}
	m.waiter.reply(fmt.Errorf("%s was not synced in time (%s); check that its creator or a seeder is online (menode peers)", m.ID, why))
}

// views is what sync knows of the repositories ids (nil: of every one).
func (s *syncer) views(ids []wire.RepoID) map[wire.RepoID]syncView {
	if ids == nil {
		ids = slices.Collect(maps.Keys(s.repos))
		ids = slices.AppendSeq(ids, maps.Keys(s.learned))
	}
	out := make(map[wire.RepoID]syncView, len(ids))
	for _, id := range ids {
		r := s.repos[id]
		if r == nil {
			if l, ok := s.learned[id]; ok {
				out[id] = syncView{Seeders: s.seedersOf(id, l.creator, l.refs)}
			}
			continue
		}
		v := syncView{Seeders: s.seeders(r), LastError: r.lastError}
		r.delegatesView(&v)
		if f := r.fetch; f != nil {
			v.Syncing, v.Bytes, v.Size = true, f.status.Bytes, f.status.Size
			v.Phase, v.Percent, v.Step = f.status.Phase, f.status.Percent, f.status.Step
		}
		out[id] = v
	}
	return out
}
