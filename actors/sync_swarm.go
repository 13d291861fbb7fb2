package actors

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// The sync actor's side of the swarm (wire/PROTOCOL.md, "Swarm"): which
// peers keep which full bundle (their inventories say), when a first sync
// takes pieces from several of them at once (transfer_swarm.go runs it),
// the manifests of the full bundles this node builds, and what status
// shows of swarm fetches.

// bundleAd is a full bundle a node keeps for the swarm: of the refs
// whose RefsHash is Refs, its SHA-256 and size.
type bundleAd struct {
	Refs, SHA [32]byte
	Size      uint64
}

// Messages about the swarm.
type (
	// bundleKept tells gossip that we keep Ad for repository ID (sync
	// sends it for the bundles this node built, and at start).
	bundleKept struct {
		ID wire.RepoID
		Ad bundleAd
	}
	// swarmSeederFailed: a swarm fetch dropped one of its seeders; Blame
	// when it sent a piece that failed its check or stalled.
	swarmSeederFailed struct {
		Repo  wire.RepoID
		Peer  wire.NodeID
		Err   error
		Blame bool
	}
	// swarmUpdate: a swarm fetch's figures, as status shows them.
	swarmUpdate struct {
		PID  *actor.PID
		Stat SwarmFetch
	}
	// swarmServing: a swarm fetch serves the checked pieces of Ad (Stop:
	// no longer); sync tells gossip, which lists it in our inventory.
	swarmServing struct {
		Repo wire.RepoID
		Ad   bundleAd
		Stop bool
	}
	// bundleFetching tells gossip that we fetch Ad of repository ID and
	// serve its checked pieces (Stop: no longer).
	bundleFetching struct {
		ID   wire.RepoID
		Ad   bundleAd
		Stop bool
	}
	// stopForSwarm: sync stops a fetch from one seeder, to go on as a
	// swarm fetch (swarmSwitch); what it received is kept.
	stopForSwarm struct{}
	// swarmAddSeeders: sync gives a running swarm fetch seeders that
	// appeared (partial holders of its bundle, mostly).
	swarmAddSeeders struct{ Seeders []swarmSeeder }
	// swarmScan: what a restart found on disk: kept bundles, and the
	// bundle each swarm fetch left checked pieces of.
	swarmScan struct {
		kept  []persist.KeptBundle
		parts map[wire.RepoID][32]byte
	}
)

// SwarmFetch is one swarm fetch as status --json shows it.
type SwarmFetch struct {
	Repo      wire.RepoID `json:"repo"`
	Bundle    string      `json:"bundle"` // SHA-256, hex
	Size      int64       `json:"size"`
	PieceSize int         `json:"piece_size"`
	Pieces    int         `json:"pieces"`   // in the bundle
	Kept      int         `json:"kept"`     // checked pieces kept from before (a restart, an earlier try)
	Received  int         `json:"received"` // pieces received and checked by this fetch
	Rejected  int         `json:"rejected"` // pieces that failed their check (each blamed on its seeder)
	// PerSeeder: pieces received and checked, per seeder did:key.
	PerSeeder map[string]int `json:"per_seeder"`
	Builder   string         `json:"builder,omitempty"` // who signed the manifest
	BytesIn   int64          `json:"bytes_in"`          // piece bytes received over the network
	State     string         `json:"state"`             // running, done or failed
	Error     string         `json:"error,omitempty"`
	StartedAt time.Time      `json:"started_at"`
}

// swarmRecent is how many ended swarm fetches status shows.
const swarmRecent = 4

// swarmState is what sync keeps for the swarm.
type swarmState struct {
	ads    map[wire.NodeID]map[wire.RepoID]bundleAd // from inventories
	partly map[wire.NodeID]map[wire.RepoID]bundleAd // bundles being fetched (partial holders), from inventories
	parts  map[wire.RepoID][32]byte                 // bundles with checked pieces left on disk
	// switching: a first sync from one seeder being stopped to go on as a
	// swarm fetch (swarmSwitch); switched: it happened (once per repository).
	switching map[wire.RepoID]bool
	switched  map[wire.RepoID]bool
	bad       map[wire.RepoID][32]byte // a bundle whose manifest proved wrong: not swarmed again
	fetch     map[string]*SwarmFetch   // running, by transfer actor
	recent    []SwarmFetch             // ended, oldest first
	since     time.Time                // sync became ready
}

func (s *syncer) swarm() *swarmState {
	if s.sw.ads == nil {
		s.sw = swarmState{ads: map[wire.NodeID]map[wire.RepoID]bundleAd{}, partly: map[wire.NodeID]map[wire.RepoID]bundleAd{}, parts: map[wire.RepoID][32]byte{},
			bad: map[wire.RepoID][32]byte{}, switching: map[wire.RepoID]bool{}, switched: map[wire.RepoID]bool{}, fetch: map[string]*SwarmFetch{}}
	}
	return &s.sw
}

// bundleAdsSeen takes in the bundles a node's inventory lists: those it
// keeps and those it is fetching.
func (s *syncer) bundleAdsSeen(origin wire.NodeID, ads, fetching map[wire.RepoID]bundleAd) {
	sw := s.swarm()
	if len(fetching) == 0 {
		delete(sw.partly, origin)
	} else {
		sw.partly[origin] = fetching
	}
	if len(ads) == 0 {
		delete(sw.ads, origin)
		return
	}
	sw.ads[origin] = ads
}

// swarmSwitch stops a first sync from one seeder that now keeps a full
// bundle of the refs being fetched (it built it for us, its inventory
// says so), unless most of it has arrived: the bytes received are that
// bundle's first ones, so the swarm fetch that follows takes them as
// pieces (persist.AdoptPart; each is checked against the manifest) and
// trades the rest with the other fetchers of the bundle (partial
// holders), instead of all of them pulling everything from that one
// seeder (fetchers that start together all start before it lists the
// bundle). Once per repository. Not while the seeder is our only peer:
// nobody else could trade pieces, and the switch costs git the pack's
// first bytes indexed again (B2, two nodes: 2.4 s of 14 s).
func (s *syncer) swarmSwitch(ctx actor.Context) {
	const swarmSwitchPieces = 4 // a bundle of at most this many pieces is finished where it started
	if len(s.peers) < 2 {
		return
	}
	sw := s.swarm()
	for id, r := range s.repos {
		f := r.fetch
		if f == nil || f.swarm != nil || sw.switched[id] || r.Mirror != noRefs || !r.delegate().IsZero() {
			continue
		}
		ad, ok := sw.ads[f.peer][id]
		if !ok || ad.Refs != r.Refs || ad.SHA == sw.bad[id] {
			continue
		}
		if uint64(f.status.Bytes) > ad.Size/2 {
			continue // most of it is here: finish from that seeder
		}
		if ad.Size <= swarmSwitchPieces*uint64(s.cfg.PieceSize) {
			continue // a few pieces: nothing to trade that pays for a second request
		}
		sw.switched[id], sw.switching[id] = true, true
		s.log.Info("sync: switching to the swarm", "repo", id, "peer", f.peer, "bundle", hex.EncodeToString(ad.SHA[:]))
		ctx.Send(f.pid, &stopForSwarm{})
	}
}

// swarmJoin gives the running swarm fetches the node origin can serve
// pieces to (it keeps or fetches their bundle) unless it is one of their
// seeders already, or backing off.
func (s *syncer) swarmJoin(ctx actor.Context, origin wire.NodeID) {
	sw, pid := s.swarm(), s.peers[origin]
	if pid == nil {
		return
	}
	now := time.Now()
	for _, byRepo := range []map[wire.RepoID]bundleAd{sw.ads[origin], sw.partly[origin]} {
		for id, ad := range byRepo {
			r := s.repos[id]
			if r == nil || r.fetch == nil || r.fetch.swarm == nil || r.fetch.swarmAd != ad || slices.Contains(r.fetch.swarm, origin) || r.fetch.joined[origin] {
				continue
			}
			if b := r.failures[origin]; b != nil && now.Before(b.until) {
				continue
			}
			_, complete := sw.ads[origin][id]
			complete = complete && sw.ads[origin][id] == ad
			if r.fetch.joined == nil {
				r.fetch.joined = map[wire.NodeID]bool{}
			}
			r.fetch.joined[origin] = true
			ctx.Send(r.fetch.pid, &swarmAddSeeders{Seeders: []swarmSeeder{{id: origin, pid: pid, partial: !complete}}})
		}
	}
}

// swarmScanned takes in what start found on disk: kept bundles go to
// gossip (listed while our mirror holds their refs), pieces left by a
// swarm fetch are waited for (startSwarm).
func (s *syncer) swarmScanned(ctx actor.Context, m *swarmScan) {
	sw := s.swarm()
	sw.since = time.Now()
	for _, k := range m.kept {
		ctx.Send(s.gossip, &bundleKept{ID: k.Repo, Ad: adOf(k.Manifest)})
	}
	for id, sha := range m.parts {
		sw.parts[id] = sha
	}
}

func adOf(m *wire.BundleManifest) bundleAd {
	return bundleAd{Refs: [32]byte(m.RefsHash), SHA: [32]byte(m.BundleSha256), Size: m.Size}
}

// scanSwarm reads what start finds on disk for the swarm. It blocks.
func scanSwarm(root string) *swarmScan {
	return &swarmScan{kept: persist.KeptBundles(root), parts: persist.SwarmParts(root)}
}

// startSwarm starts a swarm fetch of r instead of a fetch from one
// seeder, when job is a first sync (no haves) and at least one of the
// candidates keeps a full bundle of the wanted refs (the one an earlier
// swarm fetch left checked pieces of first, else the one most keep).
// Nodes fetching that bundle themselves (partial holders) join as
// seeders of the pieces they hold, now and as they appear (swarmJoin). It
// reports whether it took r: started, or waiting a while after a restart
// for a seeder of the bundle whose pieces are on disk.
func (s *syncer) startSwarm(ctx actor.Context, r *syncRepo, job fetchJob, candidates []wire.NodeID) bool {
	if !job.delegate.IsZero() || len(job.mirror.Refs) != 0 {
		return false
	}
	sw := s.swarm()
	part := sw.parts[r.ID]
	groups := map[bundleAd][]wire.NodeID{}
	for _, id := range candidates {
		if ad, ok := sw.ads[id][r.ID]; ok && ad.Refs == r.Refs && ad.SHA != sw.bad[r.ID] && ad.Size <= uint64(job.maxBundle) {
			groups[ad] = append(groups[ad], id)
		}
	}
	var best bundleAd
	var seeders []wire.NodeID
	for ad, ids := range groups {
		switch {
		case ad.SHA == part:
			best, seeders = ad, ids
		case best.SHA == part && part != [32]byte{}:
		case len(ids) > len(seeders) || (len(ids) == len(seeders) && string(ad.SHA[:]) < string(best.SHA[:])):
			best, seeders = ad, ids
		}
	}
	resuming := part != [32]byte{} && best.SHA == part
	if len(seeders) == 0 || (part != [32]byte{} && !resuming && len(seeders) < 2) {
		if part != [32]byte{} && !resuming && time.Since(sw.since) < s.cfg.SwarmResumeWait {
			// Checked pieces wait on disk: give their seeders a moment
			// to connect (or their inventories to arrive) after a restart.
			sendAfter(ctx, s.cfg.SwarmResumeWait/4, &syncTick{})
			return true
		}
		if len(seeders) == 0 {
			return false
		}
	}
	// The seeders that failed least first; at most SwarmSeeders, complete
	// ones first, then partial holders of the same bundle.
	slices.SortStableFunc(seeders, func(a, b wire.NodeID) int { return s.attempts(r, a) - s.attempts(r, b) })
	seeders = seeders[:min(len(seeders), s.cfg.SwarmSeeders)]
	var peers []swarmSeeder
	for _, id := range seeders {
		peers = append(peers, swarmSeeder{id: id, pid: s.peers[id]})
	}
	joined := map[wire.NodeID]bool{}
	now := time.Now()
	for id, byRepo := range sw.partly {
		if ad, ok := byRepo[r.ID]; !ok || ad != best || s.peers[id] == nil || slices.Contains(seeders, id) || len(peers) >= s.cfg.SwarmSeeders {
			continue
		}
		if b := r.failures[id]; b != nil && now.Before(b.until) {
			continue
		}
		peers = append(peers, swarmSeeder{id: id, pid: s.peers[id], partial: true})
		joined[id] = true
	}
	job.peer, job.peerPID = seeders[0], s.peers[seeders[0]]
	job.log = s.log.With("repo", r.ID, "swarm", hex.EncodeToString(best.SHA[:8]))
	s.nextID++
	name := fmt.Sprintf("swarm-%d", s.nextID)
	sj := swarmJob{fetchJob: job, ad: best, seeders: peers, add: make(chan swarmSeeder, 16), max: s.cfg.SwarmSeeders, partials: s.partials, gone: newSeedersGone()}
	pid := spawnChild(ctx, name, func() actor.Actor {
		return &swarmFetcher{fetcher: fetcher{job: job, store: s.store, log: job.log}, sj: sj}
	})
	r.fetch = &syncFetch{pid: pid, peer: seeders[0], swarm: seeders, swarmAd: best, joined: joined, status: transferStatus{Repo: r.ID, Peer: seeders[0], Phase: PhaseReceiving}}
	for _, id := range seeders {
		s.perPeer[id]++
	}
	s.fetches++
	s.counts.FetchesStarted++
	sw.fetch[pid.Id] = &SwarmFetch{Repo: r.ID, Bundle: hex.EncodeToString(best.SHA[:]), Size: int64(best.Size), State: "running", StartedAt: time.Now().UTC(), PerSeeder: map[string]int{}}
	s.log.Info("sync: swarm fetching", "repo", r.ID, "bundle", hex.EncodeToString(best.SHA[:]), "size", best.Size, "seeders", len(seeders), "partial_holders", len(joined), "resume", resuming)
	return true
}

// attempts is how many fetches of r from peer failed lately.
func (s *syncer) attempts(r *syncRepo, peer wire.NodeID) int {
	if b := r.failures[peer]; b != nil {
		return b.attempts
	}
	return 0
}

// swarmSeederFailed backs off from a seeder a swarm fetch dropped.
func (s *syncer) swarmSeederFailed(m *swarmSeederFailed) {
	r := s.repos[m.Repo]
	if r == nil {
		return
	}
	if r.fetch != nil {
		delete(r.fetch.joined, m.Peer) // it may join again when it lists the bundle anew
	}
	b := s.backOff(r, m.Peer, m.Blame)
	if m.Blame {
		s.counts.FetchesFailed["invalid"]++
		s.log.Warn("sync: swarm seeder failed", "repo", m.Repo, "peer", m.Peer, "err", wire.OneLine(m.Err.Error()), "retry_in", time.Until(b.until).Round(time.Millisecond))
		return
	}
	s.log.Info("sync: swarm seeder dropped", "repo", m.Repo, "peer", m.Peer, "err", wire.OneLine(m.Err.Error()))
}

// swarmUpdated keeps a swarm fetch's figures for status.
func (s *syncer) swarmUpdated(m *swarmUpdate) {
	sw := s.swarm()
	if _, ok := sw.fetch[m.PID.Id]; ok {
		st := m.Stat
		sw.fetch[m.PID.Id] = &st
	}
}

// swarmEnded moves a swarm fetch to the recent ones; what it left on disk
// (checked pieces, for a resume) is remembered.
func (s *syncer) swarmEnded(pid *actor.PID, m *transferEnded) {
	sw := s.swarm()
	st := sw.fetch[pid.GetId()]
	if st == nil {
		return
	}
	delete(sw.fetch, pid.GetId())
	sha, _ := hex.DecodeString(st.Bundle)
	switch {
	case m.Err == nil:
		st.State = "done"
		delete(sw.parts, m.Repo)
	default:
		st.State, st.Error = "failed", wire.OneLine(m.Err.Error())
		if m.Blame {
			// The manifest's signer is at fault: its bundle is not
			// swarmed again (a single seeder serves the repository).
			sw.bad[m.Repo] = [32]byte(sha)
			delete(sw.parts, m.Repo)
		} else if len(sha) == 32 {
			sw.parts[m.Repo] = [32]byte(sha)
		}
	}
	sw.recent = append(sw.recent, *st)
	if len(sw.recent) > swarmRecent {
		sw.recent = slices.Delete(sw.recent, 0, len(sw.recent)-swarmRecent)
	}
}

// dropSwarmPart removes the pieces a swarm fetch of id left (for a
// resume) once the mirror is synced some other way: a first sync from one
// seeder after no seeder of that bundle came back, say. Else they would
// stay in tmp/ for good.
func (s *syncer) dropSwarmPart(id wire.RepoID) {
	sw := s.swarm()
	if _, left := sw.parts[id]; !left {
		return
	}
	delete(sw.parts, id)
	root := s.cfg.Root
	go persist.RemoveSwarmPart(root, id) // the disk, off the mailbox
}

// swarmView is the running and the recent swarm fetches, for status.
func (s *syncer) swarmView() []SwarmFetch {
	sw := s.swarm()
	out := slices.Clone(sw.recent)
	for _, st := range sw.fetch {
		out = append(out, *st)
	}
	for i := range out {
		out[i].PerSeeder = cloneCounts(out[i].PerSeeder)
	}
	return out
}

func cloneCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// manifestFor is the manifest of the full bundle at path (of repository
// id, refs): the one kept beside it, else, when there is none (this node
// built the bundle), one it makes and signs with key now. It blocks;
// once ctx is done (the node stops) it writes nothing.
func manifestFor(ctx context.Context, key ed25519.PrivateKey, pieceSize int, path string, id wire.RepoID, refs [32]byte) (*wire.SignedManifest, *wire.BundleManifest, error) {
	s, m, err := persist.ReadManifest(path)
	if err == nil {
		if [32]byte(m.RefsHash) != refs || m.RepoId != id.String() {
			return nil, nil, fmt.Errorf("the manifest beside %s is of another bundle", persist.QuotePath(path))
		}
		return s, m, nil
	}
	if !errors.Is(err, os.ErrNotExist) || key == nil {
		return nil, nil, err
	}
	m, err = persist.MakeManifest(path, id, refs, pieceSize)
	if err != nil {
		return nil, nil, err
	}
	if m.Size == 0 {
		return nil, nil, errors.New("an empty bundle has no manifest")
	}
	created := time.Now().UnixMilli()
	m.CreatedMs = created
	if s, err = wire.SignManifest(key, m); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := persist.WriteManifest(path, s); err != nil {
		return nil, nil, err
	}
	return s, m, nil
}

// dropKept removes the full bundle kept of r's old refs once its mirror
// holds others (now): it no longer serves a first sync of the signed
// refs. The disk work runs off the mailbox.
func (s *syncer) dropKept(r *syncRepo, now [32]byte) {
	old := r.Mirror
	if old == noRefs || old == now || !r.delegate().IsZero() {
		return
	}
	root, id := s.cfg.Root, r.ID
	go persist.DropKept(root, id, old)
}
