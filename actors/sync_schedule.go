package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/wire"
)

// Scheduling: which repository is behind, which seeder to ask, and what
// a fetch's outcome means for the next try (backoff per repository and
// seeder, longer when the seeder was at fault).

// seeders lists the nodes known to serve r's signed refs: its creator and
// every node whose inventory lists them.
func (s *syncer) seeders(r *syncRepo) []wire.NodeID { return s.seedersOf(r.ID, r.Creator, r.Refs) }

// seedersOf lists the seeders of repository id, by creator, at refs (a
// RefsHash).
func (s *syncer) seedersOf(id wire.RepoID, creator wire.NodeID, refs [32]byte) []wire.NodeID {
	var out []wire.NodeID
	if !creator.IsZero() {
		out = append(out, creator)
	}
	for origin, inv := range s.inventories {
		if h, ok := inv[id]; ok && h == refs && origin != creator {
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
	var ids []wire.RepoID
	for id, r := range s.repos {
		if !s.busy(r) && r.behind() && s.wanted(r) && s.reachable(r) {
			ids = append(ids, id)
		}
	}
	if s.cfg.Seed != SeedFollowed { // learned ones are not followed: fetched only when seeding all
		for id, l := range s.learned {
			if s.reachableOf(id, l.creator, l.refs) {
				ids = append(ids, id)
			}
		}
	}
	slices.SortFunc(ids, func(a, b wire.RepoID) int { return bytes.Compare(a[:], b[:]) })
	for _, id := range ids {
		if s.fetches >= s.cfg.MaxFetches {
			return
		}
		if r := s.repo(id); s.wanted(r) && (r.refused == 0 || r.refused != r.Seq) {
			s.start(ctx, r)
		}
	}
	s.scheduleDelegates(ctx)
}

// reachable reports whether a seeder of r is connected (cheap: checked
// before anything that walks every repository).
func (s *syncer) reachable(r *syncRepo) bool { return s.reachableOf(r.ID, r.Creator, r.Refs) }

// reachableOf is reachable of repository id, by creator, at refs.
func (s *syncer) reachableOf(id wire.RepoID, creator wire.NodeID, refs [32]byte) bool {
	if s.peers[creator] != nil {
		return true
	}
	for origin, inv := range s.inventories {
		if s.peers[origin] != nil && inv[id] == refs {
			return true
		}
	}
	return false
}

// wanted reports whether the seeding policy has this node fetch r: not
// removed, and followed (or cloned) unless it seeds everything.
func (s *syncer) wanted(r *syncRepo) bool {
	if p := r.parentRepo(); p != nil {
		r = p // a delegate's refs: as the repository
	}
	return !r.Removed && (s.cfg.Seed != SeedFollowed || r.Followed || r.Cloned)
}

// start picks a connected seeder that is not backing off and not at its
// cap of fetches, and spawns a fetching transfer actor. The peer of an
// interrupted transfer comes first, since it may still hold that bundle;
// else one of those that failed least often (so that after a seeder
// stalls, the next try goes to one that has not), at random.
func (s *syncer) start(ctx actor.Context, r *syncRepo) {
	if s.quotaLeft(r) <= 0 {
		r.refused = r.Seq
		r.lastError = "refused: the mirrors are at their quota; raise --mirror-quota or remove repositories"
		s.log.Warn("sync: repository refused", "repo", r.ID, "creator", r.Creator, "err", r.lastError)
		return
	}
	now := time.Now()
	var candidates []wire.NodeID
	var nextTry time.Time
	for _, id := range s.seeders(r) {
		if s.peers[id] == nil || s.perPeer[id] >= s.cfg.MaxFetchesPerPeer {
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
		s.notifyWaiters(ctx, r, &Progress{Repo: r.ID, Phase: PhaseWaiting, Message: "no seeder reachable yet"})
		return
	}
	id := r.ID
	r.starting = true // no other fetch of the repository starts meanwhile (sync_delegates.go)
	// What the fetch starts from is read now (sync keeps it in short).
	// No resume point (or none readable) is a zero Transfer: start afresh.
	askFor(ctx, s.store, &loadFetch{ID: id}, func(st fetchState, err error) {
		r.starting = false
		if s.busy(r) || !r.behind() || s.fetches >= s.cfg.MaxFetches || s.repos[id] != r.top() {
			return
		}
		want, signed, mirror := st.Repo, st.Signed, st.Mirror
		if d := r.dl; d != nil && d.parent != nil {
			// A delegate's refs: their announcement is kept in full
			// (sync_delegates.go); the store gives the resume point.
			want, signed, mirror, err = d.want, d.wantSigned, d.mirror, nil
		}
		if err != nil || wire.RefsHash(want.Refs) != r.Refs {
			// Not recorded yet, or replaced meanwhile: the next tick tries again.
			s.log.Debug("sync: the stored record is not of the state to fetch", "repo", id, "err", err)
			return
		}
		resume := st.Transfer
		// Other fetches may have started meanwhile.
		candidates = slices.DeleteFunc(candidates, func(id wire.NodeID) bool {
			return s.peers[id] == nil || s.perPeer[id] >= s.cfg.MaxFetchesPerPeer
		})
		if len(candidates) == 0 {
			return // a fetch that ends reschedules
		}
		peer := s.leastFailed(r, candidates)
		if slices.Contains(candidates, resume.Peer) {
			peer = resume.Peer
		}
		pid := s.peers[peer]
		if pid == nil {
			return
		}
		job := fetchJob{
			want: want, wantSigned: signed, mirror: mirror, resume: resume, peer: peer, peerPID: pid,
			delegate: r.delegate(), root: s.cfg.Root, maxBundle: s.cfg.MaxBundleSize, rate: s.download,
			timings: s.cfg.transferTimings(), work: s.cfg.workContext, log: s.log.With("repo", id, "peer", peer),
		}
		if s.startSwarm(ctx, r, job, candidates) {
			return // from several seeders at once (sync_swarm.go)
		}
		s.nextID++
		name := fmt.Sprintf("fetch-%d", s.nextID)
		r.fetch = &syncFetch{
			pid: spawnChild(ctx, name, func() actor.Actor {
				return &fetcher{job: job, store: s.store, log: job.log}
			}),
			peer: peer, status: transferStatus{Repo: id, Peer: peer, Phase: PhaseReceiving},
		}
		s.perPeer[peer]++
		s.fetches++
		s.counts.FetchesStarted++
		s.log.Info("sync: fetching", "repo", id, "peer", peer)
	})
}

// leastFailed picks at random one of the candidates with the fewest
// failed fetches of r.
func (s *syncer) leastFailed(r *syncRepo, candidates []wire.NodeID) wire.NodeID {
	var best []wire.NodeID
	fewest := -1
	for _, id := range candidates {
		n := 0
		if b := r.failures[id]; b != nil {
			n = b.attempts
		}
		switch {
		case fewest < 0 || n < fewest:
			best, fewest = []wire.NodeID{id}, n
		case n == fewest:
			best = append(best, id)
		}
	}
	return best[rand.N(len(best))]
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
			// A swarm fetcher asks a partial holder which pieces it holds
			// every moment (want_have, no bytes): not worth a line each.
			level := slog.LevelInfo
			if m.Bytes == 0 {
				level = slog.LevelDebug
			}
			s.log.Log(context.Background(), level, "sync: served", "repo", m.Repo, "peer", m.Peer, "bytes", m.Bytes)
		}
		return
	}
	r := s.repos[m.Repo]
	if !m.Delegate.IsZero() && r != nil {
		r = r.delegateRepoOf(m.Delegate)
	}
	if r == nil || r.fetch == nil || (m.PID != nil && !r.fetching(m.PID)) {
		return
	}
	peers := []wire.NodeID{r.fetch.peer}
	if r.fetch.swarm != nil {
		peers = r.fetch.swarm
		s.swarmEnded(r.fetch.pid, m)
	}
	r.fetch = nil
	if m.PartMeasured {
		r.partSize = m.PartSize
	}
	s.fetches--
	for _, peer := range peers {
		if s.perPeer[peer]--; s.perPeer[peer] <= 0 {
			delete(s.perPeer, peer)
		}
	}
	s.bytesIn += m.BytesIn
	switched := s.swarm().switching[m.Repo]
	delete(s.sw.switching, m.Repo)
	switch {
	case m.Err == nil && m.Mirror != nil:
		s.counts.FetchesDone++
		s.dropKept(r, wire.RefsHash(m.Mirror.Refs)) // sync_swarm.go
		s.dropSwarmPart(m.Repo)
		r.Mirror, r.Mirrored, r.size, r.refused = wire.RefsHash(m.Mirror.Refs), len(m.Mirror.Refs) > 0, m.MirrorSize, 0
		delete(r.failures, m.Peer)
		if len(r.failures) == 0 {
			r.failures = nil
		}
		r.lastError = ""
		args := []any{"repo", m.Repo, "peer", m.Peer, "refs", len(m.Mirror.Refs), "bytes", m.BytesIn}
		if d := r.delegate(); !d.IsZero() {
			args = append(args, "delegate", d) // another delegate's refs (sync_delegates.go)
		}
		if r.dl != nil {
			r.dl.mirrored(*m.Mirror)
		}
		s.log.Info("sync: mirror updated", args...)
		if m.Delegate.IsZero() {
			ctx.Send(s.gossip, &mirrorUpdated{ID: m.Repo, Refs: m.Mirror.Refs, Bundle: m.Kept})
		}
		s.refreshCanonical(ctx, r)
		s.releaseWaiters(ctx, r, m.Peer)
	case m.OverQuota:
		s.counts.FetchesFailed["over_quota"]++
		// Not the seeder's fault, and no use asking again until the
		// creator signs another state (or the node restarts).
		r.refused = r.Seq
		r.lastError = wire.OneLine(m.Err.Error())
		s.log.Warn("sync: repository refused", "repo", m.Repo, "creator", r.Creator, "err", r.lastError)
		for _, w := range r.waiters {
			w.cancel()
			w.reply(fmt.Errorf("%s: %s", m.Repo, r.lastError))
		}
		r.waiters = nil
	case switched && m.Err != nil:
		// Stopped to switch to the swarm (sync_swarm.go): nobody's fault.
		s.log.Info("sync: fetch stopped for the swarm", "repo", m.Repo, "peer", m.Peer)
	default:
		err := m.Err
		if err == nil {
			err = errors.New("transfer ended without a result")
		}
		r.lastError = wire.OneLine(err.Error())
		if m.Blame {
			s.counts.FetchesFailed["invalid"]++
		} else {
			s.counts.FetchesFailed["error"]++
		}
		b := s.backOff(r, m.Peer, m.Blame)
		level := slog.LevelInfo
		if m.Blame {
			level = slog.LevelWarn
		}
		s.log.Log(context.Background(), level, "sync: fetch failed", "repo", m.Repo, "peer", m.Peer, "err", r.lastError, "retry_in", time.Until(b.until).Round(time.Millisecond))
	}
	if root := r.top(); root.dl != nil && root.dl.canonicalDue {
		s.refreshCanonical(ctx, r) // due while the fetch ran
	}
	s.reschedule(ctx)
}

// backOff counts a failed fetch of r from peer and sets when peer is
// asked again: the backoff doubles, four times as long when the peer was
// at fault (blame).
func (s *syncer) backOff(r *syncRepo, peer wire.NodeID, blame bool) *backoff {
	b := r.failures[peer]
	if b == nil {
		if r.failures == nil {
			r.failures = map[wire.NodeID]*backoff{}
		}
		b = &backoff{}
		r.failures[peer] = b
	}
	b.attempts++
	delay := s.cfg.SyncBackoff << min(b.attempts-1, 10)
	if blame {
		delay *= 4
	}
	b.until = time.Now().Add(min(delay, s.cfg.SyncBackoffMax))
	return b
}
