package actors

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Messages of the sync actor.
type (
	// repoAnnounced: gossip accepted a creator's announcement of a
	// repository; Signed is it, encoded (read only: gossip holds the same
	// bytes).
	repoAnnounced struct {
		Repo   persist.Repo
		Signed []byte
	}
	// inventorySeen: gossip accepted a node's inventory (repo -> RefsHash).
	inventorySeen struct {
		Origin wire.NodeID
		Repos  map[wire.RepoID][32]byte
	}
	// syncNow asks for a sync of one repository; with Wait the reply
	// (nil, or an error) comes when the mirror holds the signed refs.
	syncNow struct {
		ID       wire.RepoID
		Wait     bool
		Timeout  time.Duration
		Progress *actor.PID
	}
	// syncStates asks what sync knows of every repository. Reply: map[wire.RepoID]syncView.
	syncStates struct{}
	// syncCounters asks for transfer totals. Reply: syncTotals.
	syncCounters struct{}
	// bundleFor asks for a bundle of refs minus haves (a serving transfer
	// asks its parent). Reply: *bundleReady.
	bundleFor struct {
		Repo  wire.RepoID
		Refs  map[string]string
		Haves []string
	}
	bundleReady struct {
		ID   [32]byte
		Path string // the cached bundle; an empty file means "nothing to send"
		// Build is set while git still writes the bundle: it grows at
		// Build.temp until Build.done closes (then it is at Path, or
		// Build.err says why not), and is sent as it grows.
		Build *bundleBuild
	}
	// bundleBuilt: a cache build finished.
	bundleBuilt struct {
		key [32]byte
		err error
	}
	// syncTick: the sync interval's tick; also a retry after a backoff.
	syncTick struct{}
	// scheduleNow: run the scheduler (once per burst of events).
	scheduleNow struct{}
	// repoChanged: the node changed a repository's local flags (follow,
	// clone); Repo is the stored record.
	repoChanged struct{ Repo persist.Repo }
	// repoRemoved: repo remove: stop fetching it and forget its mirror.
	repoRemoved struct{ ID wire.RepoID }
	// mirrorSizes: the mirrors' sizes on disk, measured at start.
	mirrorSizes struct{ sizes map[wire.RepoID]int64 }
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
	Seeders     []wire.NodeID
	LastError   string // why the last fetch failed, until one succeeds
}

// syncTotals are transfer counters since start.
type syncTotals struct {
	Fetching, Serving int
	BytesIn, BytesOut int64
	Counts            TransferCounts
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

// syncRepo is what sync tracks per repository.
type syncRepo struct {
	want persist.Repo // the creator-signed state
	// wantSigned is want's announcement, encoded, when gossip handed it
	// over (not after a restart, when want comes from the store).
	wantSigned []byte
	mirror     persist.Mirror
	fetching   *actor.PID
	peer       wire.NodeID
	status     transferStatus
	failures   map[wire.NodeID]*backoff
	waiters    []*syncWaiter
	lastError  string
	size       int64 // bytes of the mirror on disk
	statusAt   time.Time
	rate       float64 // bytes per second of the running fetch, smoothed
	refused    uint64  // the seq of the signed state refused for the mirror quota
}

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
	return !r.want.Local && len(r.want.Refs) > 0 && wire.RefsHash(r.mirror.Refs) != wire.RefsHash(r.want.Refs)
}

// syncer is the sync scheduler: it knows which repositories are behind and
// which peers can serve them, starts fetching transfer actors (bounded, with
// backoff per repository and peer), spawns a serving transfer actor for each
// incoming request, and owns the bundle cache.
type syncer struct {
	cfg    Config
	store  *actor.PID
	gossip *actor.PID
	log    *slog.Logger

	repos       map[wire.RepoID]*syncRepo
	peers       map[wire.NodeID]*actor.PID
	inventories map[wire.NodeID]map[wire.RepoID][32]byte
	fetches     int
	serving     map[string]bool // serving transfer actors by PID id, until they end
	building    map[[32]byte]*bundleBuild
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
}

func newSyncer(cfg Config, store, gossip *actor.PID) *syncer {
	s := &syncer{
		cfg: cfg, store: store, gossip: gossip, log: cfg.Logger,
		repos: map[wire.RepoID]*syncRepo{}, peers: map[wire.NodeID]*actor.PID{},
		inventories: map[wire.NodeID]map[wire.RepoID][32]byte{}, building: map[[32]byte]*bundleBuild{},
		serving: map[string]bool{}, counts: TransferCounts{FetchesFailed: map[string]int64{}},
	}
	s.upload, s.download = byteRate(cfg.MaxUploadRate), byteRate(cfg.MaxDownloadRate)
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
		ask(ctx, s.store, loadRepos{}, func(res any, err error) {
			if err != nil {
				s.log.Error("sync: load repositories", "err", err)
				return
			}
			for _, st := range res.([]repoState) {
				r := s.repo(st.Repo.ID)
				r.want, r.mirror = st.Repo, st.Mirror.Mirror
			}
			s.cleanTmp()
			ids := make([]wire.RepoID, 0, len(s.repos))
			for id, r := range s.repos {
				if !r.want.Local && len(r.mirror.Refs) > 0 {
					ids = append(ids, id)
				}
			}
			root := s.cfg.Root
			async(ctx, func() (any, error) {
				sizes := map[wire.RepoID]int64{}
				for _, id := range ids {
					sizes[id], _ = persist.DiskSize(persist.MirrorPath(root, id))
				}
				return &mirrorSizes{sizes: sizes}, nil
			}, func(res any, err error) {
				if m, ok := res.(*mirrorSizes); ok {
					for id, n := range m.sizes {
						s.repo(id).size = n
					}
				}
				s.ready = true
				s.reschedule(ctx)
			})
		})
	case *repoAnnounced:
		r := s.repo(m.Repo.ID)
		if m.Repo.Seq > r.want.Seq || len(r.want.Refs) == 0 {
			// Gossip knows the creator's state; the local flags are ours.
			followed, removed, clones := r.want.Followed, r.want.Removed, r.want.Clones
			r.want, r.wantSigned = m.Repo, m.Signed
			r.want.Followed, r.want.Removed, r.want.Clones = followed, removed, clones
		}
		s.reschedule(ctx)
	case *repoChanged:
		r := s.repo(m.Repo.ID)
		if m.Repo.Seq >= r.want.Seq {
			if m.Repo.Seq > r.want.Seq {
				r.wantSigned = nil // of the older state
			}
			r.want = m.Repo
		} else {
			r.want.Followed, r.want.Removed, r.want.Clones = m.Repo.Followed, m.Repo.Removed, m.Repo.Clones
		}
		r.refused = 0
		s.reschedule(ctx)
	case *repoRemoved:
		if r := s.repos[m.ID]; r != nil {
			if r.fetching != nil {
				ctx.Stop(r.fetching) // its Terminated frees the slot
			}
			r.mirror, r.size, r.refused, r.lastError = persist.Mirror{}, 0, 0, ""
			r.want.Removed, r.want.Followed, r.want.Clones = true, false, nil
			if r.want.Local {
				delete(s.repos, m.ID)
			}
		}
	case *inventorySeen:
		s.inventories[m.Origin] = m.Repos
		s.reschedule(ctx)
	case *peerConnected:
		s.peers[m.ID] = m.PID
		s.reschedule(ctx)
	case *peerDisconnected:
		if s.peers[m.ID] == m.PID {
			delete(s.peers, m.ID)
		}
	case *syncTick:
		s.reschedule(ctx)
	case *scheduleNow:
		s.pending = false
		s.schedule(ctx)
	case *syncNow:
		s.syncNow(ctx, m)
	case *waitExpired:
		s.expire(m)
	case *syncStates:
		ctx.Respond(s.views())
	case *syncCounters:
		counts := s.counts
		counts.FetchesFailed = maps.Clone(s.counts.FetchesFailed)
		ctx.Respond(syncTotals{Fetching: s.fetches, Serving: len(s.serving), BytesIn: s.bytesIn, BytesOut: s.bytesOut, Counts: counts})
	case *streamIn:
		s.serve(ctx, m)
	case *bundleFor:
		s.bundleFor(ctx, m)
	case *bundleBuilt:
		s.built(ctx, m)
	case *transferStatus:
		s.progress(ctx, m)
	case *transferEnded:
		s.ended(ctx, m)
	case *actor.Terminated:
		// Transfer actors do not stop themselves: sync stops each when its
		// transferEnded arrives. One that stops before that panicked: free
		// its slot.
		if s.stopping {
			return
		}
		if s.serving[m.Who.Id] {
			delete(s.serving, m.Who.Id)
			return
		}
		for _, r := range s.repos {
			if r.fetching != nil && r.fetching.Equal(m.Who) {
				s.ended(ctx, &transferEnded{Repo: r.want.ID, Peer: r.peer, Err: errors.New("transfer failed")})
			}
		}
	case *setInterval:
		s.setInterval(ctx, m.d)
	case *actor.Stopping:
		s.stopping = true
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

func (s *syncer) repo(id wire.RepoID) *syncRepo {
	r := s.repos[id]
	if r == nil {
		r = &syncRepo{failures: map[wire.NodeID]*backoff{}}
		r.want.ID = id
		s.repos[id] = r
	}
	return r
}

// seeders lists the nodes known to serve r's signed refs: its creator and
// every node whose inventory lists them.
func (s *syncer) seeders(r *syncRepo) []wire.NodeID {
	want := wire.RefsHash(r.want.Refs)
	var out []wire.NodeID
	if !r.want.Creator.IsZero() {
		out = append(out, r.want.Creator)
	}
	for origin, inv := range s.inventories {
		if h, ok := inv[r.want.ID]; ok && h == want && origin != r.want.Creator {
			out = append(out, origin)
		}
	}
	sort.Slice(out[min(1, len(out)):], func(i, j int) bool { return out[i+1].Less(out[j+1]) })
	return out
}

// schedule starts fetches for repositories that are behind, within the
// concurrency cap.
// reschedule runs schedule once for a burst of events (a flood of
// announcements or connections), not once per event: it sends itself a
// message that comes after what is already in the mailbox.
func (s *syncer) reschedule(ctx actor.Context) {
	if !s.pending {
		s.pending = true
		ctx.Send(ctx.Self(), &scheduleNow{})
	}
}

func (s *syncer) schedule(ctx actor.Context) {
	if !s.ready {
		return
	}
	ids := make([]wire.RepoID, 0, len(s.repos))
	for id, r := range s.repos {
		if r.fetching == nil && r.behind() && s.wanted(r) && s.reachable(r) {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b wire.RepoID) int { return bytes.Compare(a[:], b[:]) })
	for _, id := range ids {
		if s.fetches >= s.cfg.MaxFetches {
			return
		}
		if r := s.repos[id]; s.wanted(r) && (r.refused == 0 || r.refused != r.want.Seq) {
			s.start(ctx, r)
		}
	}
}

// reachable reports whether a seeder of r is connected (cheap: checked
// before anything that walks every repository).
func (s *syncer) reachable(r *syncRepo) bool {
	if s.peers[r.want.Creator] != nil {
		return true
	}
	want := wire.RefsHash(r.want.Refs)
	for origin, inv := range s.inventories {
		if s.peers[origin] != nil && inv[r.want.ID] == want {
			return true
		}
	}
	return false
}

// wanted reports whether the seeding policy has this node fetch r: not
// removed, and followed (or cloned) unless it seeds everything.
func (s *syncer) wanted(r *syncRepo) bool {
	return !r.want.Removed && (s.cfg.Seed != SeedFollowed || r.want.Followed || len(r.want.Clones) > 0)
}

// quotaLeft is how many bytes a fetch of r may add to the mirrors: within
// the total quota and within its creator's share.
func (s *syncer) quotaLeft(r *syncRepo) int64 {
	var total, creator int64
	for _, o := range s.repos {
		if o.want.Local {
			continue
		}
		total += o.size
		if o.want.Creator == r.want.Creator {
			creator += o.size
		}
	}
	return max(0, min(s.cfg.MirrorQuota-total, s.cfg.MirrorQuotaPerCreator-creator))
}

// start picks a connected seeder that is not backing off and spawns a
// fetching transfer actor; the peer of an interrupted transfer comes first,
// since it may still hold that bundle.
func (s *syncer) start(ctx actor.Context, r *syncRepo) {
	if s.quotaLeft(r) <= 0 {
		r.refused = r.want.Seq
		r.lastError = "refused: the mirrors are at their quota; raise --mirror-quota or remove repositories"
		s.log.Warn("sync: repository refused", "repo", r.want.ID, "creator", r.want.Creator, "err", r.lastError)
		return
	}
	now := time.Now()
	var candidates []wire.NodeID
	var nextTry time.Time
	for _, id := range s.seeders(r) {
		if s.peers[id] == nil {
			continue
		}
		if b := r.failures[id]; b != nil && now.Before(b.until) {
			if nextTry.IsZero() || b.until.Before(nextTry) {
				nextTry = b.until
			}
			continue
		}
		candidates = append(candidates, id)
	}
	if len(candidates) == 0 {
		if !nextTry.IsZero() {
			sendAfter(ctx, time.Until(nextTry)+10*time.Millisecond, &syncTick{})
		}
		s.notifyWaiters(ctx, r, &Progress{Repo: r.want.ID, Phase: PhaseWaiting, Message: "no seeder reachable yet"})
		return
	}
	id := r.want.ID
	ask(ctx, s.store, loadTransfer{ID: id}, func(res any, err error) {
		if r.fetching != nil || !r.behind() || s.fetches >= s.cfg.MaxFetches {
			return
		}
		var resume persist.Transfer
		if err == nil {
			resume = res.(persist.Transfer)
		}
		peer := candidates[rand.N(len(candidates))]
		if slices.Contains(candidates, resume.Peer) {
			peer = resume.Peer
		}
		pid := s.peers[peer]
		if pid == nil {
			return
		}
		job := fetchJob{
			want: r.want, wantSigned: r.wantSigned, mirror: r.mirror, resume: resume, peer: peer, peerPID: pid,
			root: s.cfg.Root, maxBundle: s.cfg.MaxBundleSize, maxGitAlloc: s.cfg.MaxGitAlloc, rate: s.download, quota: s.quotaLeft(r),
		}
		s.nextID++
		name := fmt.Sprintf("fetch-%d", s.nextID)
		r.fetching = spawnChild(ctx, name, func() actor.Actor {
			return &fetcher{job: job, store: s.store, log: s.log.With("repo", id, "peer", peer)}
		})
		r.peer = peer
		r.status, r.statusAt, r.rate = transferStatus{Repo: id, Peer: peer, Phase: PhaseReceiving}, time.Time{}, 0
		s.fetches++
		s.counts.FetchesStarted++
		s.log.Info("sync: fetching", "repo", id, "peer", peer, "resume_offset", resumeOffset(s.cfg.Root, id, resume))
	})
}

func resumeOffset(root string, id wire.RepoID, t persist.Transfer) int64 {
	if len(t.BundleID) == 0 {
		return 0
	}
	fi, err := os.Stat(partPath(root, id))
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (s *syncer) progress(ctx actor.Context, m *transferStatus) {
	r := s.repos[m.Repo]
	if r == nil {
		return
	}
	now := time.Now()
	if prev := r.status; prev.Peer == m.Peer && m.Bytes > prev.Bytes && !r.statusAt.IsZero() {
		if dt := now.Sub(r.statusAt).Seconds(); dt > 0 {
			inst := float64(m.Bytes-prev.Bytes) / dt
			if r.rate == 0 {
				r.rate = inst
			} else {
				r.rate = 0.7*r.rate + 0.3*inst // smoothed: chunks arrive in bursts
			}
		}
	}
	r.status, r.statusAt = *m, now
	p := &Progress{Repo: m.Repo, Phase: m.Phase, Peer: m.Peer, Bytes: m.Bytes, Size: m.Size, Rate: r.rate}
	s.notifyWaiters(ctx, r, p)
}

func (s *syncer) notifyWaiters(ctx actor.Context, r *syncRepo, p *Progress) {
	for _, w := range r.waiters {
		if w.progress != nil {
			ctx.Send(w.progress, p)
		}
	}
}

// ended frees a transfer's slot and applies its outcome.
func (s *syncer) ended(ctx actor.Context, m *transferEnded) {
	if m.PID != nil {
		ctx.Stop(m.PID)
	}
	if m.Serving {
		delete(s.serving, m.PID.GetId())
		s.bytesOut += m.Bytes
		if m.Err != nil {
			s.counts.ServesFailed++
			s.log.Debug("sync: serving ended", "repo", m.Repo, "peer", m.Peer, "err", m.Err)
		} else {
			s.counts.ServesDone++
			s.log.Info("sync: served", "repo", m.Repo, "peer", m.Peer, "bytes", m.Bytes)
		}
		return
	}
	r := s.repos[m.Repo]
	if r == nil || r.fetching == nil || (m.PID != nil && !r.fetching.Equal(m.PID)) {
		return
	}
	r.fetching = nil
	s.fetches--
	s.bytesIn += m.BytesIn
	switch {
	case m.Err == nil && m.Mirror != nil:
		s.counts.FetchesDone++
		r.mirror, r.size, r.refused = *m.Mirror, m.MirrorSize, 0
		delete(r.failures, m.Peer)
		r.lastError = ""
		s.log.Info("sync: mirror updated", "repo", m.Repo, "peer", m.Peer, "refs", len(r.mirror.Refs), "bytes", m.BytesIn)
		ctx.Send(s.gossip, &mirrorUpdated{ID: m.Repo, Refs: r.mirror.Refs})
		if !r.behind() {
			for _, w := range r.waiters {
				w.cancel()
				if w.progress != nil {
					ctx.Send(w.progress, &Progress{Repo: m.Repo, Phase: PhaseSynced, Peer: m.Peer})
				}
				w.reply(true)
			}
			r.waiters = nil
		}
	case m.OverQuota:
		s.counts.FetchesFailed["over_quota"]++
		// Not the seeder's fault, and no use asking again until the
		// creator signs another state (or the node restarts).
		r.refused = r.want.Seq
		r.lastError = oneLine(m.Err.Error())
		s.log.Warn("sync: repository refused", "repo", m.Repo, "creator", r.want.Creator, "err", r.lastError)
		for _, w := range r.waiters {
			w.cancel()
			w.reply(fmt.Errorf("%s: %s", m.Repo, r.lastError))
		}
		r.waiters = nil
	default:
		err := m.Err
		if err == nil {
			err = errors.New("transfer ended without a result")
		}
		r.lastError = oneLine(err.Error())
		if m.Blame {
			s.counts.FetchesFailed["invalid"]++
		} else {
			s.counts.FetchesFailed["error"]++
		}
		b := r.failures[m.Peer]
		if b == nil {
			b = &backoff{}
			r.failures[m.Peer] = b
		}
		b.attempts++
		delay := s.cfg.SyncBackoff << min(b.attempts-1, 10)
		if m.Blame {
			delay *= 4
		}
		b.until = time.Now().Add(min(delay, s.cfg.SyncBackoffMax))
		level := slog.LevelInfo
		if m.Blame {
			level = slog.LevelWarn
		}
		s.log.Log(context.Background(), level, "sync: fetch failed", "repo", m.Repo, "peer", m.Peer, "err", r.lastError, "retry_in", time.Until(b.until).Round(time.Millisecond))
	}
	s.reschedule(ctx)
}

// syncNow starts a sync and, with Wait, answers when it is done.
func (s *syncer) syncNow(ctx actor.Context, m *syncNow) {
	reply := replier(ctx)
	r := s.repos[m.ID]
	if r == nil || len(r.want.Refs) == 0 {
		reply(fmt.Errorf("unknown repository %s; `menode repo list` shows the known ones", m.ID))
		return
	}
	if !r.behind() {
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
	if r.fetching != nil && w.progress != nil {
		st := r.status
		ctx.Send(w.progress, &Progress{Repo: m.ID, Phase: st.Phase, Peer: st.Peer, Bytes: st.Bytes, Size: st.Size})
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

func (s *syncer) views() map[wire.RepoID]syncView {
	out := make(map[wire.RepoID]syncView, len(s.repos))
	for id, r := range s.repos {
		v := syncView{Seeders: s.seeders(r), LastError: r.lastError}
		if r.fetching != nil {
			v.Syncing, v.Bytes, v.Size = true, r.status.Bytes, r.status.Size
		}
		out[id] = v
	}
	return out
}

// serve spawns a serving transfer actor for an incoming request, or
// refuses it when too many uploads run.
func (s *syncer) serve(ctx actor.Context, m *streamIn) {
	s.nextID++
	name := fmt.Sprintf("serve-%d", s.nextID)
	sv := &server{in: m, root: s.cfg.Root, store: s.store, rate: s.upload, log: s.log.With("peer", m.From)}
	if len(s.serving) >= s.cfg.MaxUploads {
		sv.busy = true
	}
	pid := spawnChild(ctx, name, func() actor.Actor { return sv })
	s.serving[pid.Id] = true
	s.counts.ServesStarted++
}

// bundleBuild is a bundle git is writing. temp is fixed; err is set before
// done is closed and read only after, so readers in other goroutines see it.
type bundleBuild struct {
	temp string
	done chan struct{}
	err  error
}

// bundleFor answers with a cached bundle, or with one being built (each
// bundle is built once, however many transfers ask for it meanwhile).
func (s *syncer) bundleFor(ctx actor.Context, m *bundleFor) {
	key := bundleKey(m.Repo, m.Refs, m.Haves)
	path := s.cachePath(m.Repo, key)
	if _, err := os.Stat(path); err == nil {
		now := time.Now()
		_ = os.Chtimes(path, now, now) // recently used: evicted last
		s.counts.CacheHits++
		ctx.Respond(&bundleReady{ID: key, Path: path})
		return
	}
	if b := s.building[key]; b != nil {
		s.counts.CacheHits++ // built once for every transfer that asks meanwhile
		ctx.Respond(&bundleReady{ID: key, Path: path, Build: b})
		return
	}
	s.counts.CacheMisses++
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		ctx.Respond(err)
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "build-*.tmp")
	if err != nil {
		ctx.Respond(err)
		return
	}
	b := &bundleBuild{temp: tmp.Name(), done: make(chan struct{})}
	s.building[key] = b
	mirror := persist.GitRepo{Dir: persist.MirrorPath(s.cfg.Root, m.Repo)}
	names := make([]string, 0, len(m.Refs))
	for name := range m.Refs {
		names = append(names, name)
	}
	sort.Strings(names)
	haves, refs := slices.Clone(m.Haves), maps.Clone(m.Refs)
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		b.err = buildBundle(mirror, tmp, path, refs, names, haves)
		close(b.done)
		root.Send(self, &bundleBuilt{key: key, err: b.err})
	}()
	ctx.Respond(&bundleReady{ID: key, Path: path, Build: b})
}

func (s *syncer) built(ctx actor.Context, m *bundleBuilt) {
	delete(s.building, m.key)
	if m.err != nil {
		s.log.Warn("sync: bundle build failed", "err", m.err)
		return
	}
	root, limit := s.cfg.Root, s.cfg.MaxCacheSize
	go evictCache(filepath.Join(root, "cache"), limit)
}

// cachePath names a cached bundle by repository (so repo remove can find
// them) and bundle ID.
func (s *syncer) cachePath(repo wire.RepoID, key [32]byte) string {
	return cachePath(s.cfg.Root, repo, key)
}

func cachePath(root string, repo wire.RepoID, key [32]byte) string {
	return filepath.Join(root, "cache", repo.String()+"-"+hex.EncodeToString(key[:])+".bundle")
}

// cleanTmp removes receive files no transfer record names (left by a
// crash before the record was written).
func (s *syncer) cleanTmp() {
	entries, err := os.ReadDir(filepath.Join(s.cfg.Root, "tmp"))
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			_ = os.Remove(filepath.Join(s.cfg.Root, "tmp", name))
		}
	}
}

// bundleKey names a bundle: the same repository, refs and haves give the
// same bytes (it is built once and cached), so it also names a resume point.
func bundleKey(repo wire.RepoID, refs map[string]string, haves []string) [32]byte {
	h := sha256.New()
	h.Write([]byte("menode bundle v1\x00"))
	h.Write(repo[:])
	sum := wire.RefsHash(refs)
	h.Write(sum[:])
	sorted := slices.Clone(haves)
	sort.Strings(sorted)
	for _, have := range slices.Compact(sorted) {
		h.Write([]byte(have + "\n"))
	}
	var key [32]byte
	h.Sum(key[:0])
	return key
}

// buildBundle has git write the bundle into tmp, then moves it to path
// (readers that opened tmp keep reading it); an empty file when the
// requester has everything. It blocks.
func buildBundle(mirror persist.GitRepo, tmp *os.File, path string, refs map[string]string, names, haves []string) error {
	defer os.Remove(tmp.Name()) // a no-op once renamed
	ctx, cancel := context.WithTimeout(context.Background(), workTimeout)
	defer cancel()
	err := mirror.CreateBundle(ctx, tmp, names, haves)
	empty := errors.Is(err, persist.ErrNothingToSend)
	if empty {
		err = tmp.Truncate(0)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if !empty {
		// git bundles the refs as they are now: if the mirror moved on
		// since it was recorded (the owner committed meanwhile), this is
		// not the signed state. Never send it: the requester would
		// rightly refuse it and blame us.
		if err := checkHeads(tmp.Name(), refs); err != nil {
			return err
		}
	}
	return os.Rename(tmp.Name(), path)
}

// checkHeads checks that a bundle's heads are among refs, at the same objects.
func checkHeads(path string, refs map[string]string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, err := persist.ReadBundleHeader(bufio.NewReader(f))
	if err != nil {
		return err
	}
	for name, id := range h.Heads {
		if refs[name] != id {
			return fmt.Errorf("the mirror's %s moved since it was recorded", name)
		}
	}
	return nil
}

// evictCache removes the least recently used bundles until the cache is
// within limit bytes. It blocks.
func evictCache(dir string, limit int64) {
	type entry struct {
		path string
		size int64
		used time.Time
	}
	var all []entry
	var total int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".bundle") {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			all = append(all, entry{p, fi.Size(), fi.ModTime()})
			total += fi.Size()
		}
		return nil
	})
	sort.Slice(all, func(i, j int) bool { return all[i].used.Before(all[j].used) })
	for _, e := range all {
		if total <= limit {
			return
		}
		if os.Remove(e.path) == nil {
			total -= e.size
		}
	}
}

// oneLine makes a local error message safe for a terminal and a log line
// without cutting it (peer text in it was made safe where it entered).
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
