package actors

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Refs of a repository's other delegates: each delegate's signed refs are
// fetched on their own, by a syncRepo of their own under the repository's
// (delegation.delegates), into the mirror under persist.DelegatePrefix; after every
// change the canonical refs are worked out again (persist.WriteCanonical)
// from the refs of the delegates the kept identity document names. Only
// one fetch or canonical write runs per repository at a time: they share
// the mirror, its quarantine and its .part file.

// Messages of the sync actor about delegates.
type (
	// canonicalWritten: a canonical write ended.
	canonicalWritten struct {
		ID        wire.RepoID
		Canonical persist.Canonical
		Err       error
	}
	// saveDelegateRefs records what the mirror holds of a delegate's refs
	// (a zero Refs forgets them). No reply.
	saveDelegateRefs struct {
		ID       wire.RepoID
		Delegate wire.NodeID
		Refs     persist.DelegateRefs
	}
)

var errDelegateRemoved = errors.New("no longer a delegate of the repository")

// delegation is what sync keeps, beyond the summary, of a repository with
// an identity document or other delegates' refs (parent nil), or of one
// delegate's refs of such a repository (parent set). Such repositories are
// few, and kept whole: never reduced to a learnedRepo.
type delegation struct {
	// Of a repository: the kept identity document (nil: the creator
	// alone), the other delegates' refs (each fetched by a syncRepo of
	// its own), the default branch, the canonical refs last written.
	identity                       *wire.Identity
	delegates                      map[wire.NodeID]*syncRepo
	branch                         string
	canonical                      *persist.Canonical
	loading                        bool // mirror is being read from the store (loadDelegation)
	canonicalRunning, canonicalDue bool

	// Of a delegate's refs: whose, the repository's syncRepo, and the
	// delegate's signed state and its announcement, encoded, as gossip
	// handed them over (want.Creator is the delegate: the signer its
	// fetch checks).
	who        wire.NodeID
	parent     *syncRepo
	want       persist.Repo
	wantSigned []byte

	// mirror: of a repository, our mirror's record (the creator's refs
	// and the delegates' held), read from the store when the delegation
	// is made and kept by the fetches that end; of a delegate's refs,
	// what the mirror holds of them.
	mirror persist.Mirror
}

// mirrored takes in the record a fetch wrote.
func (d *delegation) mirrored(m persist.Mirror) {
	held := d.mirror.Delegates
	d.mirror = m
	if d.parent == nil && d.mirror.Delegates == nil {
		d.mirror.Delegates = held
	}
}

// parentRepo is the repository's syncRepo of r, a delegate's refs; nil
// when r is a repository's.
func (r *syncRepo) parentRepo() *syncRepo {
	if r.dl == nil {
		return nil
	}
	return r.dl.parent
}

// top is the repository's syncRepo of r (r itself, or its parent).
func (r *syncRepo) top() *syncRepo {
	if p := r.parentRepo(); p != nil {
		return p
	}
	return r
}

// delegate is the delegate whose refs r fetches (zero: a repository's).
func (r *syncRepo) delegate() wire.NodeID {
	if r.dl == nil {
		return wire.NodeID{}
	}
	return r.dl.who
}

// delegateRepoOf is the syncRepo of delegate d's refs of r, or nil.
func (r *syncRepo) delegateRepoOf(d wire.NodeID) *syncRepo {
	if r.dl == nil {
		return nil
	}
	return r.dl.delegates[d]
}

// delegated is r's delegation, made (and our mirror's record read) when
// first needed.
func (s *syncer) delegated(ctx actor.Context, r *syncRepo) *delegation {
	if r.dl == nil {
		r.dl = &delegation{}
		s.loadDelegation(ctx, r)
	}
	return r.dl
}

// loadDelegation reads r's records: the default branch, and what the
// mirror holds of the creator's and the delegates' refs.
func (s *syncer) loadDelegation(ctx actor.Context, r *syncRepo) {
	r.dl.loading = true
	id := r.ID
	askFor(ctx, s.store, &loadFetch{ID: id}, func(st fetchState, err error) {
		dl := r.dl
		if s.repos[id] != r || dl == nil {
			return
		}
		dl.loading = false
		if err != nil {
			s.log.Debug("sync: read a repository's records for its delegates", "repo", id, "err", err)
		} else {
			if st.Repo.DefaultBranch != "" {
				dl.branch = st.Repo.DefaultBranch
			}
			if wire.RefsHash(st.Mirror.Refs) == r.Mirror || dl.mirror.Seq == 0 && len(dl.mirror.Refs) == 0 {
				held := dl.mirror.Delegates
				dl.mirror = st.Mirror
				if dl.mirror.Delegates == nil {
					dl.mirror.Delegates = held
				}
			}
		}
		s.loadDelegates(r)
		s.refreshCanonical(ctx, r)
		s.reschedule(ctx)
	})
}

// delegateRepo is the syncRepo of delegate d's refs of r, made when
// first needed.
func (s *syncer) delegateRepo(r *syncRepo, d wire.NodeID) *syncRepo {
	if r.dl.delegates == nil {
		r.dl.delegates = map[wire.NodeID]*syncRepo{}
	}
	dr := r.dl.delegates[d]
	if dr == nil {
		dr = &syncRepo{repoSummary: repoSummary{ID: r.ID, Creator: d, Mirror: noRefs}, dl: &delegation{who: d, parent: r}}
		dr.dl.want.ID, dr.dl.want.Creator = r.ID, d
		if held, ok := r.dl.mirror.Delegates[d]; ok {
			dr.heldRefs(held)
		}
		r.dl.delegates[d] = dr
	}
	return dr
}

// heldRefs gives dr, a delegate's refs, what the mirror holds of them.
func (dr *syncRepo) heldRefs(held persist.DelegateRefs) {
	dr.dl.mirror = persist.Mirror{Refs: held.Refs, Seq: held.Seq, Signed: held.Signed, SyncedAt: held.SyncedAt}
	dr.Mirror, dr.Mirrored = wire.RefsHash(held.Refs), len(held.Refs) > 0
}

// loadDelegates gives r's delegates' syncRepos what the mirror's record
// holds of their refs, when they were made before it was read; and
// brings back those the record holds (from before a restart) that the
// kept document names.
func (s *syncer) loadDelegates(r *syncRepo) {
	for d, dr := range r.dl.delegates {
		if held, ok := r.dl.mirror.Delegates[d]; ok && dr.dl.mirror.Seq == 0 {
			dr.heldRefs(held)
		}
	}
	if id := r.dl.identity; id != nil {
		for d := range r.dl.mirror.Delegates {
			if id.IsDelegate(d) && d != id.Creator {
				s.delegateRepo(r, d)
			}
		}
	}
}

// identityChanged takes in the document gossip keeps: the refs of keys it
// no longer names are forgotten, and the canonical refs written again.
func (s *syncer) identityChanged(ctx actor.Context, m *identityChanged) {
	r := s.repo(m.Identity.Repo)
	dl := s.delegated(ctx, r)
	id := m.Identity
	dl.identity = &id
	for d, dr := range dl.delegates {
		if id.IsDelegate(d) {
			continue
		}
		if f := dr.fetch; f != nil {
			s.ended(ctx, &transferEnded{PID: f.pid, Repo: id.Repo, Delegate: d, Peer: f.peer, Err: errDelegateRemoved})
		}
		delete(dl.delegates, d)
		ctx.Send(s.store, &saveDelegateRefs{ID: id.Repo, Delegate: d})
	}
	s.loadDelegates(r)
	s.refreshCanonical(ctx, r)
	s.reschedule(ctx)
}

// delegateAnnounced takes in a delegate's signed refs (gossip checked it
// is a delegate of the kept document).
func (s *syncer) delegateAnnounced(ctx actor.Context, m *delegateAnnounced) {
	r := s.repo(m.Repo.ID)
	if r.dl == nil || r.dl.identity == nil || !r.dl.identity.IsDelegate(m.Delegate) {
		return
	}
	dl := r.dl
	if dl.branch == "" {
		// Known only from delegates' refs (the creator's are not taken:
		// it is no longer a delegate): what they say of the repository.
		dl.branch = m.Repo.DefaultBranch
	}
	if r.Creator.IsZero() {
		r.Creator = m.Repo.Creator
	}
	dr := s.delegateRepo(r, m.Delegate)
	if m.Repo.Seq > dr.dl.want.Seq {
		dr.dl.want, dr.dl.wantSigned = m.Repo, m.Signed
		dr.dl.want.Creator = m.Delegate
		if dr.dl.want.DefaultBranch == "" {
			dr.dl.want.DefaultBranch = dl.branch
		}
		dr.Seq, dr.Refs, dr.HasRefs = m.Repo.Seq, wire.RefsHash(m.Repo.Refs), len(m.Repo.Refs) > 0
	}
	s.reschedule(ctx)
}

// busy reports whether a fetch or a canonical write of r's repository
// runs or is about to.
func (s *syncer) busy(r *syncRepo) bool {
	r = r.top()
	if r.fetch != nil || r.starting {
		return true
	}
	if r.dl == nil {
		return false
	}
	if r.dl.canonicalRunning {
		return true
	}
	for _, dr := range r.dl.delegates {
		if dr.fetch != nil || dr.starting {
			return true
		}
	}
	return false
}

// scheduleDelegates starts fetches of delegates' refs that are behind.
func (s *syncer) scheduleDelegates(ctx actor.Context) {
	ids := make([]wire.RepoID, 0)
	for id, r := range s.repos {
		if r.dl != nil && len(r.dl.delegates) > 0 && !r.Local {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b wire.RepoID) int { return slices.Compare(a[:], b[:]) })
	for _, id := range ids {
		r := s.repos[id]
		for _, d := range slices.SortedFunc(maps.Keys(r.dl.delegates), func(a, b wire.NodeID) int { return slices.Compare([]byte(a.String()), []byte(b.String())) }) {
			if s.fetches >= s.cfg.MaxFetches {
				return
			}
			dr := r.dl.delegates[d]
			if !s.busy(r) && dr.behind() && s.wanted(dr) && s.reachable(dr) && (dr.refused == 0 || dr.refused != dr.Seq) {
				s.start(ctx, dr)
			}
		}
	}
}

// fetchingRepo is the syncRepo (a repository's, or a delegate's under
// it) whose fetch pid runs; nil when none.
func (s *syncer) fetchingRepo(id wire.RepoID, pid *actor.PID) *syncRepo {
	r := s.repos[id]
	if r == nil || pid == nil {
		return nil
	}
	if r.fetching(pid) {
		return r
	}
	if r.dl != nil {
		for _, dr := range r.dl.delegates {
			if dr.fetching(pid) {
				return dr
			}
		}
	}
	return nil
}

// refreshCanonical writes r's canonical refs again, now or, when a fetch
// runs (or the records are being read), once it ended.
func (s *syncer) refreshCanonical(ctx actor.Context, r *syncRepo) {
	r = r.top()
	dl := r.dl
	if dl == nil || dl.identity == nil || r.Local || dl.branch == "" {
		return
	}
	if s.busy(r) || dl.loading {
		dl.canonicalDue = true
		return
	}
	dl.canonicalDue = false
	id := *dl.identity
	states := map[wire.NodeID]map[string]string{}
	for _, d := range id.Delegates {
		switch dr := dl.delegates[d]; {
		case d == id.Creator && len(dl.mirror.Refs) > 0:
			states[d] = dl.mirror.Refs
		case dr != nil && len(dr.dl.mirror.Refs) > 0:
			states[d] = dr.dl.mirror.Refs
		}
	}
	if len(states) == 0 {
		return
	}
	dir := persist.MirrorPath(s.cfg.Root, r.ID)
	branch, repo := dl.branch, r.ID
	dl.canonicalRunning = true
	work, timeout := s.runCtx, s.cfg.WorkTimeout
	asyncFor(ctx, timeout, func() (*canonicalWritten, error) {
		wctx, cancel := context.WithTimeout(work, timeout)
		defer cancel()
		if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
			return &canonicalWritten{ID: repo, Err: err}, nil
		}
		c, err := persist.GitRepo{Dir: dir}.WriteCanonical(wctx, states, id.Threshold, branch, id.Delegates)
		return &canonicalWritten{ID: repo, Canonical: c, Err: err}, nil
	}, func(m *canonicalWritten, err error) {
		dl.canonicalRunning = false
		if m != nil {
			err = m.Err
		}
		if err != nil {
			s.log.Warn("sync: canonical refs", "repo", repo, "err", err)
		} else {
			dl.canonical = &m.Canonical
			if why, ok := m.Canonical.Undecided["refs/heads/"+branch]; ok {
				s.log.Warn("sync: no canonical default branch", "repo", repo, "branch", branch, "why", why)
			}
		}
		if dl.canonicalDue {
			s.refreshCanonical(ctx, r)
		}
		s.releaseWaiters(ctx, r, wire.NodeID{})
		s.reschedule(ctx)
	})
}

// repoBehind reports whether r (a repository's syncRepo) lacks signed
// refs it wants: the creator's (while it is a delegate), or another
// delegate's; or the canonical refs are still to be written.
func (s *syncer) repoBehind(r *syncRepo) bool {
	if r.behind() {
		return true
	}
	if r.dl == nil {
		return false
	}
	if r.dl.canonicalRunning || r.dl.canonicalDue {
		return true
	}
	for _, dr := range r.dl.delegates {
		if dr.behind() {
			return true
		}
	}
	return false
}

// releaseWaiters answers the commands waiting for r's repository (repo
// sync --wait, clone) once it holds every signed state it wants.
func (s *syncer) releaseWaiters(ctx actor.Context, r *syncRepo, peer wire.NodeID) {
	r = r.top()
	if s.repoBehind(r) {
		return
	}
	for _, w := range r.waiters {
		w.cancel()
		if w.progress != nil {
			ctx.Send(w.progress, &Progress{Repo: r.ID, Phase: PhaseSynced, Peer: peer})
		}
		w.reply(true)
	}
	r.waiters = nil
}

// delegatesView is what views shows of r's delegates.
func (r *syncRepo) delegatesView(v *syncView) {
	if r.dl == nil {
		return
	}
	if r.dl.identity != nil {
		v.Identity = r.dl.identity
	}
	for d, dr := range r.dl.delegates {
		if v.DelegateRefs == nil {
			v.DelegateRefs = map[wire.NodeID]map[string]string{}
		}
		v.DelegateRefs[d] = dr.dl.mirror.Refs
		if dr.lastError != "" && v.LastError == "" {
			v.LastError = "delegate " + d.String() + ": " + dr.lastError
		}
	}
	v.Canonical = r.dl.canonical
}
