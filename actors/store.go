package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Messages to the store actor. Each is answered with the value named, or an error.

// insertRepo stores a new repository; an ID already present is an error. Reply: repoState.
type insertRepo struct {
	Repo persist.Repo
	// Replace: a repository learned from gossip may be there, and is
	// replaced (a delegate's own copy: repo add --repo-id).
	Replace bool
}

// loadRepo reads one repository. Reply: repoState.
type loadRepo struct{ ID wire.RepoID }

// loadRepos reads every repository. Reply: []repoState.
type loadRepos struct {
	Filter persist.RepoFilter // "" for all; persist.FilterLocal for those created here, ...
}

// loadRepoSummaries reads every repository (with Mirrored, those our
// mirrors hold refs of) as sync and gossip keep it in memory
// (repoSummary), decoding the records one at a time. Reply: []repoSummary.
type loadRepoSummaries struct{ Mirrored bool }

// loadFetch reads what a fetch of a repository starts from: its record,
// our mirror's, the creator's announcement gossip stored for it, and the
// resume point. Reply: fetchState.
type loadFetch struct{ ID wire.RepoID }

// fetchState is loadFetch's reply. Signed is the stored announcement of
// Repo's signed state (nil when the store holds another or none).
type fetchState struct {
	Repo     persist.Repo
	Mirror   persist.Mirror
	Signed   []byte
	Transfer persist.Transfer
}

// saveNode records a node we connected to or learned of. No reply.
type saveNode struct{ Node persist.Node }

// loadNodes reads every known node. Reply: []persist.Node.
type loadNodes struct{}

// saveAnnouncement stores the latest signed announcement under key. No reply.
type saveAnnouncement struct {
	Key    string
	Seq    uint64
	Signed []byte
}

// loadAnnouncements reads every stored announcement. Reply: [][]byte.
type loadAnnouncements struct{}

// loadHeld reads the stored announcements of held slots, for gossip to
// send. Reply: [][]byte, one per slot, nil where the store holds another
// seq (or none).
type loadHeld struct{ Slots []heldAt }

// heldAt names a held slot by key and seq; at is gossip's own index.
type heldAt struct {
	Key string
	Seq uint64
	at  int
}

// deleteAnnouncement forgets the announcement stored under key. No reply.
type deleteAnnouncement struct{ Key string }

// forgetRepo forgets a learned repository we neither created nor mirror
// (its announcement was evicted). No reply.
type forgetRepo struct{ ID wire.RepoID }

// countRepos counts the repositories, without reading them. Reply: int.
type countRepos struct{}

// setFollowed marks a repository followed or not (repo follow / unfollow);
// following also undoes a removal. Reply: repoState.
type setFollowed struct {
	ID     wire.RepoID
	Follow bool
}

// deleteRepo forgets a repository's mirror, resume point and clones; a
// learned one stays known but marked removed, so it is not fetched again
// (one this node created is forgotten). Reply: repoState as it was.
type deleteRepo struct{ ID wire.RepoID }

// learnRepo records a repository announced by its creator, unless we hold
// a newer announcement of it already. No reply.
type learnRepo struct{ Repo persist.Repo }

// updateRepo records the refs the watcher read (the rest of the record is
// kept). Reply: repoState.
type updateRepo struct{ Repo persist.Repo }

// loadMirror reads what our mirror of a repository holds. Reply: mirrorState.
type loadMirror struct{ ID wire.RepoID }

// saveMirror records what our mirror now holds (after the refs were set).
// Reply: nil on success.
type saveMirror struct {
	ID     wire.RepoID
	Mirror persist.Mirror
}

// saveTransfer records an interrupted-receive resume point. No reply.
type saveTransfer struct{ Transfer persist.Transfer }

// loadTransfer reads a repository's resume point. Reply: persist.Transfer
// (zero when there is none).
type loadTransfer struct{ ID wire.RepoID }

// deleteTransfer forgets a resume point. No reply.
type deleteTransfer struct{ ID wire.RepoID }

// addClone records a working clone of a repository. Reply: nil.
type addClone struct {
	ID   wire.RepoID
	Path string
}

// findClone finds the repository a clone was made of. Reply: repoState.
type findClone struct{ Path string }

// mirrorState is what the store holds of a mirror; OK is false when none.
type mirrorState struct {
	Mirror persist.Mirror
	OK     bool
}

// repoSummary is a repository in short, as sync keeps each in memory:
// a learned repository costs this, not its decoded records (the refs, the
// mirror's announcement); what a fetch needs is read when it starts
// (loadFetch).
type repoSummary struct {
	ID      wire.RepoID
	Creator wire.NodeID
	Seq     uint64   // of the creator-signed state
	Refs    [32]byte // wire.RefsHash of the signed refs
	Mirror  [32]byte // wire.RefsHash of the refs our mirror holds (of none: noRefs)
	HasRefs bool     // the signed refs are known (not empty)
	// Mirrored: our mirror holds refs. The rest are the record's flags;
	// Cloned: it has recorded clones.
	Mirrored, Local, Followed, Removed, Cloned bool
}

// noRefs is the RefsHash of no refs: a repository without a mirror.
var noRefs = wire.RefsHash(nil)

// summaryOf is the summary of a repository record and our mirror's.
func summaryOf(r persist.Repo, m persist.Mirror) repoSummary {
	sum := repoSummary{ID: r.ID, Mirror: wire.RefsHash(m.Refs), Mirrored: len(m.Refs) > 0}
	sum.setRepo(r)
	return sum
}

// setRepo takes the signed state and the flags of record r.
func (sum *repoSummary) setRepo(r persist.Repo) {
	sum.Creator, sum.Seq, sum.Refs, sum.HasRefs = r.Creator, r.Seq, wire.RefsHash(r.Refs), len(r.Refs) > 0
	sum.setFlags(r)
}

// setFlags takes the local flags of record r (what this node decided).
func (sum *repoSummary) setFlags(r persist.Repo) {
	sum.Local, sum.Followed, sum.Removed, sum.Cloned = r.Local, r.Followed, r.Removed, len(r.Clones) > 0
}

// repoState is a repository record together with what our mirror holds.
type repoState struct {
	Repo   persist.Repo
	Mirror mirrorState
}

// store is the only actor that touches bbolt. bbolt calls are quick and
// serialised here, so they run inside Receive.
type store struct {
	db      *persist.Store
	log     *slog.Logger
	dead    bool                      // the store is damaged: stopping
	pending []func(db *persist.Store) // writes nobody waits for, committed together by flush
	writes  StoreWrites               // how long commits took, for status and metrics
	// Queued writes committed since the store's mapped pages were last
	// let go of (see flush).
	sinceDrop int
}

func newStore(db *persist.Store, log *slog.Logger) *store {
	return &store{db: db, log: log, writes: StoreWrites{Buckets: make([]uint64, len(StoreWriteBuckets))}}
}

// flushStore commits the queued writes (see store.deferred).
type flushStore struct{}

// maxBatch bounds the writes one commit carries. bbolt's commit walks the
// pages a transaction changed through its map of the file (the kernel
// maps 16 pages at each fault), and those pages stay in the resident set
// until the store lets go of them after the commit: some 9 MiB for 100
// random-key writes, 43 MiB for 1000 (measured on a store of 60,000
// announcements). Under the 60,000-announcement flood, commits of up to
// 1000 made the node's peak 146 to 155 MiB, of up to 100 137 to 140 MiB
// (README, "Security model"), at the cost of more, smaller commits.
const maxBatch = 100

func (s *store) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *flushStore:
		s.fatal(ctx, s.flush())
		return
	case *storeStats:
		w := s.writes
		w.Buckets = slices.Clone(s.writes.Buckets)
		ctx.Respond(w)
		return
	case *actor.Stopped:
		_ = s.flush() // logged
		if err := s.db.Close(); err != nil {
			s.log.Error("close store", "err", err)
		}
		return
	default:
		if w := s.deferred(m); w != nil {
			// A write nobody waits for: queue it and commit the queue once
			// the mailbox holds nothing older than our flush, so a burst
			// (a flood of announcements) costs one fsync, not one each.
			s.pending = append(s.pending, w)
			if len(s.pending) == 1 {
				ctx.Send(ctx.Self(), &flushStore{})
			}
			if len(s.pending) >= maxBatch {
				s.fatal(ctx, s.flush())
			}
			return
		}
	}
	s.fatal(ctx, s.flush()) // what a request reads or writes comes after what was queued before it
	defer s.readDone()      // its pages mapped, let go of with the writes' (see flush)
	if isStoreWrite(ctx.Message()) {
		defer s.writes.observe(time.Now())
	}
	switch m := ctx.Message().(type) {
	case *actor.Started, *actor.Stopping, *actor.Restarting:
	case *insertRepo:
		ctx.Respond(result(s.insertRepo(m.Repo, m.Replace)))
	case *loadRepo:
		ctx.Respond(result(s.state(m.ID)))
	case *loadRepos:
		states, err := s.states(m.Filter)
		ctx.Respond(result(states, s.fatal(ctx, err)))
	case *loadRepoSummaries:
		var out []repoSummary
		skipped, err := s.db.EachRepo(func(e persist.RepoEntry) {
			if !m.Mirrored || len(e.Mirror.Refs) > 0 {
				out = append(out, summaryOf(e.Repo, e.Mirror))
			}
		})
		s.skipped("repository", skipped)
		ctx.Respond(result(out, s.fatal(ctx, err)))
		s.dropMapped()
	case *loadHeld:
		out, err := s.loadHeld(m.Slots)
		ctx.Respond(result(out, err))
	case *loadFetch:
		ctx.Respond(result(s.fetchState(m.ID)))
	case *loadNodes:
		nodes, skipped, err := s.db.ListNodes()
		s.skipped("node", skipped)
		ctx.Respond(result(nodes, s.fatal(ctx, err)))
		s.dropMapped() // up to persist.MaxNodes records read (status asks)
	case *countRepos:
		ctx.Respond(result(s.db.CountRepos()))
	case *storeBarrier: // what was queued before it is committed (flushed above)
		ctx.Respond(true)
	case *loadAnnouncements:
		raw, skipped, err := s.db.ListAnnouncements()
		s.skipped("announcement", skipped)
		ctx.Respond(result(raw, s.fatal(ctx, err)))
		s.dropMapped()
	case *setFollowed:
		ctx.Respond(result(s.follow(m.ID, m.Follow)))
	case *deleteRepo:
		ctx.Respond(result(s.remove(m.ID)))
	case *loadMirror:
		mirror, ok, err := s.db.Mirror(m.ID)
		ctx.Respond(result(mirrorState{Mirror: mirror, OK: ok}, err))
	case *saveMirror:
		// A fetch that ends after repo remove must not bring the record back.
		if r, err := s.db.Repo(m.ID); err == nil && r.Removed {
			ctx.Respond(fmt.Errorf("%s was removed", m.ID))
			return
		}
		if err := s.db.PutMirror(m.ID, m.Mirror); err != nil {
			ctx.Respond(err)
			return
		}
		ctx.Respond(true)
	case *saveDelegateRefs: // sync_delegates.go
		if r, err := s.db.Repo(m.ID); err == nil && r.Removed && m.Refs.Refs != nil {
			ctx.Respond(fmt.Errorf("%s was removed", m.ID))
			return
		}
		ctx.Respond(result(true, s.db.PutDelegateRefs(m.ID, m.Delegate, m.Refs)))
	case *loadTransfer:
		t, _, err := s.db.Transfer(m.ID)
		ctx.Respond(result(t, err))
	case *addClone:
		ctx.Respond(result(true, s.addClone(m.ID, m.Path)))
	case *findClone:
		r, err := s.db.RepoByClone(m.Path)
		if err != nil {
			ctx.Respond(err)
			return
		}
		ctx.Respond(result(s.state(r.ID)))
	case *setPublished:
		ctx.Respond(result(s.setPublished(m)))
	case *updateRepo:
		if err := s.updateRepo(m.Repo); err != nil {
			ctx.Respond(err)
			return
		}
		ctx.Respond(result(s.state(m.Repo.ID)))
	default:
		s.log.Debug("store: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// loadHeld reads the stored announcements of slots, nil where the store
// holds another seq. A catch-up reads thousands of them (up to 8 MiB),
// spread over the whole announcements bucket: it reads them
// dropMappedEvery at a time and lets go of the pages each read mapped
// (see flush), so that the store's pages do not pile up in the resident
// set.
func (s *store) loadHeld(slots []heldAt) ([][]byte, error) {
	out := make([][]byte, 0, len(slots))
	for len(slots) > 0 {
		chunk := slots[:min(len(slots), dropMappedEvery)]
		slots = slots[len(chunk):]
		keys := make([]string, len(chunk))
		for i, h := range chunk {
			keys[i] = h.Key
		}
		seqs, raws, err := s.db.AnnouncementsAt(keys)
		if err != nil {
			return nil, err
		}
		for i, h := range chunk {
			if seqs[i] != h.Seq {
				raws[i] = nil
			}
		}
		out = append(out, raws...)
		if len(chunk) == dropMappedEvery {
			s.dropMapped()
		}
	}
	return out, nil
}

// deferred returns the write a message asks for when nobody waits for its
// result, or nil. A failed write is logged.
func (s *store) deferred(msg any) func(db *persist.Store) {
	switch m := msg.(type) {
	case *saveNode:
		return func(db *persist.Store) { s.logErr(saveNodeIn(db, m.Node), "store node", "node", m.Node.ID) }
	case *saveAnnouncement:
		return func(db *persist.Store) {
			s.logErr(db.PutAnnouncement(m.Key, m.Seq, m.Signed), "store announcement", "key", m.Key)
		}
	case *deleteAnnouncement:
		return func(db *persist.Store) { s.logErr(db.DeleteAnnouncement(m.Key), "delete announcement", "key", m.Key) }
	case *forgetRepo:
		return func(db *persist.Store) {
			_, err := db.ForgetRepo(m.ID)
			s.logErr(err, "forget repository", "repo", m.ID)
		}
	case *learnRepo:
		return func(db *persist.Store) { s.logErr(learnRepoIn(db, m.Repo), "store repository", "repo", m.Repo.ID) }
	case *saveTransfer:
		return func(db *persist.Store) {
			s.logErr(db.PutTransfer(m.Transfer), "store transfer", "repo", m.Transfer.Repo)
		}
	case *deleteTransfer:
		return func(db *persist.Store) { s.logErr(db.DeleteTransfer(m.ID), "store transfer", "repo", m.ID) }
	}
	return nil
}

// flush commits the queued writes in one transaction.
func (s *store) flush() error {
	if len(s.pending) == 0 {
		return nil
	}
	pending := s.pending
	s.pending = nil
	defer s.writes.observe(time.Now())
	// Every write walks bbolt's pages through its map of the file, and
	// each page touched stays in the node's resident set, with the pages
	// around it (the kernel maps up to 16 at a fault): a write of a
	// random key touches a leaf page of its own in each bucket it
	// changes, and under the 60,000-announcement flood the store's pages
	// grew the resident set by 35 to 50 MiB. Let go of them every
	// dropMappedEvery writes, inside the transaction too (a madvise; the
	// map does not move before the commit, and a later read maps the
	// pages again from the page cache, a minor fault each).
	err := s.db.Group(func(g *persist.Store) {
		for _, w := range pending {
			w(g)
			if s.sinceDrop++; s.sinceDrop >= dropMappedEvery {
				s.sinceDrop = 0
				if err := g.DropMapped(); err != nil {
					s.log.Debug("store: release mapped pages", "err", err)
				}
			}
		}
	})
	if err != nil {
		s.log.Error("store: commit queued writes", "writes", len(pending), "err", err)
	}
	if len(pending) >= dropMappedEvery {
		s.dropMapped()
	}
	return err
}

// readDone counts a request handled (most read a few records, each
// mapping pages of the file as a write does) towards the next dropMapped.
func (s *store) readDone() {
	if s.sinceDrop++; s.sinceDrop >= dropMappedEvery {
		s.sinceDrop = 0
		s.dropMapped()
	}
}

// dropMappedEvery is how many queued writes, requests, or announcements
// read for a catch-up, go between two dropMapped.
const dropMappedEvery = 16

// dropMapped lets go of the store's pages a read of every record mapped
// (see persist.Store.DropMapped).
func (s *store) dropMapped() {
	if err := s.db.DropMapped(); err != nil {
		s.log.Debug("store: release mapped pages", "err", err)
	}
}

func (s *store) logErr(err error, msg string, args ...any) {
	if err != nil {
		s.log.Error(msg, append(args, "err", err)...)
	}
}

// skipped logs, once per load, records that could not be read (they are
// left out, not fatal).
func (s *store) skipped(what string, sk persist.Skipped) {
	if sk.N > 0 {
		s.log.Warn("store: unreadable records skipped", "kind", what, "count", sk.N, "err", sk.Err)
	}
}

// fatal stops the node when the store is damaged: it cannot go on without
// it, and running on would only repeat the error. It returns err.
func (s *store) fatal(ctx actor.Context, err error) error {
	if errors.Is(err, persist.ErrCorruptStore) && !s.dead {
		s.dead = true
		s.log.Error("store damaged; stopping the node", "err", err)
		ctx.Stop(ctx.Self()) // node sees its child end and stops
	}
	return err
}

func (s *store) insertRepo(r persist.Repo, replace bool) (repoState, error) {
	if old, err := s.db.Repo(r.ID); err == nil && (!replace || old.Local) {
		return repoState{}, fmt.Errorf("repository %s is already added (path %s)", r.ID, old.Path)
	}
	if err := s.db.PutRepo(r); err != nil {
		return repoState{}, err
	}
	return s.state(r.ID)
}

// saveNodeIn merges what we just learned of a node with what we knew: the
// new addresses first, then the old ones, at most wire.MaxAddresses.
func saveNodeIn(db *persist.Store, n persist.Node) error {
	old, ok, err := db.Node(n.ID)
	if err != nil {
		return err
	}
	if ok {
		n.Addresses = slices.Clone(n.Addresses) // not the sender's slice
		for _, a := range old.Addresses {
			if !slices.Contains(n.Addresses, a) && len(n.Addresses) < wire.MaxAddresses {
				n.Addresses = append(n.Addresses, a)
			}
		}
		if n.Alias == "" {
			n.Alias = old.Alias
		}
	}
	return db.PutNode(n)
}

// updateRepo takes the refs, default branch and time the watcher read into
// the stored record, keeping everything else (clones recorded meanwhile).
func (s *store) updateRepo(r persist.Repo) error {
	old, err := s.db.Repo(r.ID)
	if err != nil {
		return err
	}
	old.Refs, old.DefaultBranch, old.UpdatedAt = r.Refs, r.DefaultBranch, r.UpdatedAt
	return s.db.PutRepo(old)
}

func (s *store) follow(id wire.RepoID, follow bool) (repoState, error) {
	r, err := s.db.Repo(id)
	if err != nil {
		return repoState{}, err
	}
	r.Followed = follow
	if follow {
		r.Removed = false
	}
	if err := s.db.PutRepo(r); err != nil {
		return repoState{}, err
	}
	return s.state(id)
}

func (s *store) remove(id wire.RepoID) (repoState, error) {
	st, err := s.state(id)
	if err != nil {
		return repoState{}, err
	}
	r := st.Repo
	if !r.Local {
		r.Followed, r.Removed, r.Clones = false, true, nil
		if err := s.db.PutRepo(r); err != nil {
			return repoState{}, err
		}
	}
	return st, s.db.RemoveRepo(id, !r.Local)
}

func (s *store) addClone(id wire.RepoID, path string) error {
	r, err := s.db.Repo(id)
	if err != nil {
		return err
	}
	if !slices.Contains(r.Clones, path) {
		r.Clones = append(r.Clones, path)
	}
	r.Followed, r.Removed = true, false // a clone wants its mirror kept up to date
	return s.db.PutRepo(r)
}

func learnRepoIn(db *persist.Store, r persist.Repo) error {
	old, err := db.Repo(r.ID)
	switch {
	case err == nil && (old.Local || old.Seq >= r.Seq):
		return nil
	case err == nil:
		r.AddedAt, r.Clones, r.Followed, r.Removed = old.AddedAt, old.Clones, old.Followed, old.Removed
	case errors.Is(err, persist.ErrUnknownRepo):
		r.AddedAt = time.Now().UTC()
	default:
		return err
	}
	return db.PutRepo(r)
}

func (s *store) state(id wire.RepoID) (repoState, error) {
	r, err := s.db.Repo(id)
	if err != nil {
		return repoState{}, err
	}
	m, ok, err := s.db.Mirror(id)
	if err != nil {
		return repoState{}, err
	}
	return repoState{Repo: r, Mirror: mirrorState{Mirror: m, OK: ok}}, nil
}

func (s *store) fetchState(id wire.RepoID) (fetchState, error) {
	st, err := s.state(id)
	if err != nil {
		return fetchState{}, err
	}
	f := fetchState{Repo: st.Repo, Mirror: st.Mirror.Mirror}
	seq, signed, ok, err := s.db.Announcement(slotKey(kindRepo, st.Repo.Creator, id.String()))
	if err == nil && ok && seq == st.Repo.Seq {
		f.Signed = signed
	}
	if t, _, err := s.db.Transfer(id); err == nil {
		f.Transfer = t // else start afresh
	}
	return f, nil
}

func (s *store) states(filter persist.RepoFilter) ([]repoState, error) {
	page, err := s.db.ListRepoPage(persist.RepoQuery{Filter: filter})
	if err != nil {
		return nil, err
	}
	s.skipped("repository", page.Skipped)
	out := make([]repoState, 0, len(page.Repos))
	for _, e := range page.Repos {
		out = append(out, repoState{Repo: e.Repo, Mirror: mirrorState{Mirror: e.Mirror, OK: e.MirrorOK}})
	}
	return out, nil
}

// result turns (value, error) into the single reply value an actor sends.
func result[T any](v T, err error) any {
	if err != nil {
		return err
	}
	return v
}

// Store write latency, for status and metrics.

// storeStats asks the store how long its commits took. Reply: StoreWrites.
type storeStats struct{}

// StoreWriteBuckets are the upper bounds, in seconds, of the commit latency
// histogram (bbolt commits with an fsync each).
var StoreWriteBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}

// StoreWrites is how long the store's commits took since start (a batch of
// queued writes, or one write a caller waits for): their number, total
// seconds, and per bucket of StoreWriteBuckets the number that took at
// most that long (cumulative, as Prometheus histograms).
type StoreWrites struct {
	Count   uint64   `json:"count"`
	Seconds float64  `json:"seconds"`
	Buckets []uint64 `json:"buckets"`
}

func (w *StoreWrites) observe(began time.Time) {
	d := time.Since(began).Seconds()
	w.Count++
	w.Seconds += d
	for i, le := range StoreWriteBuckets {
		if d <= le {
			w.Buckets[i]++
		}
	}
}

// isStoreWrite tells the messages written at once, in a commit of their
// own (the others are queued and committed by flush).
func isStoreWrite(m any) bool {
	switch m.(type) {
	case *insertRepo, *setFollowed, *deleteRepo, *saveMirror, *saveDelegateRefs, *addClone, *updateRepo, *setPublished:
		return true
	}
	return false
}
