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
// (delegates), into the mirror under persist.DelegatePrefix; after every
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

// delegateRepo is the syncRepo of delegate d's refs of r, made when
// first needed; its want.Creator is d (the signer its fetch checks).
func (s *syncer) delegateRepo(r *syncRepo, d wire.NodeID) *syncRepo {
	if r.delegates == nil {
		r.delegates = map[wire.NodeID]*syncRepo{}
	}
	dr := r.delegates[d]
	if dr == nil {
		dr = &syncRepo{failures: map[wire.NodeID]*backoff{}, delegate: d, parent: r}
		dr.want.ID, dr.want.Creator = r.want.ID, d
		if held, ok := r.mirror.Delegates[d]; ok {
			dr.mirror = persist.Mirror{Refs: held.Refs, Seq: held.Seq, Signed: held.Signed, SyncedAt: held.SyncedAt}
		}
		r.delegates[d] = dr
	}
	return dr
}

// loadDelegates gives r's delegates' syncRepos what the mirror's record
// holds of their refs, when they were made before it was read.
func (s *syncer) loadDelegates(r *syncRepo) {
	for d, dr := range r.delegates {
		if held, ok := r.mirror.Delegates[d]; ok && dr.mirror.Seq == 0 {
			dr.mirror = persist.Mirror{Refs: held.Refs, Seq: held.Seq, Signed: held.Signed, SyncedAt: held.SyncedAt}
		}
	}
}

// identityChanged takes in the document gossip keeps: the refs of keys it
// no longer names are forgotten, and the canonical refs written again.
func (s *syncer) identityChanged(ctx actor.Context, m *identityChanged) {
	r := s.repo(m.Identity.Repo)
	id := m.Identity
	r.identity = &id
	for d, dr := range r.delegates {
		if id.IsDelegate(d) {
			continue
		}
		if dr.fetching != nil {
			s.ended(ctx, &transferEnded{PID: dr.fetching, Repo: id.Repo, Delegate: d, Peer: dr.peer, Err: errDelegateRemoved})
		}
		delete(r.delegates, d)
		ctx.Send(s.store, &saveDelegateRefs{ID: id.Repo, Delegate: d})
	}
	// Delegates recorded in the mirror (from before a restart) come back.
	for d := range r.mirror.Delegates {
		if id.IsDelegate(d) && d != id.Creator {
			s.delegateRepo(r, d)
		}
	}
	s.refreshCanonical(ctx, r)
	s.reschedule(ctx)
}

// delegateAnnounced takes in a delegate's signed refs (gossip checked it
// is a delegate of the kept document).
func (s *syncer) delegateAnnounced(ctx actor.Context, m *delegateAnnounced) {
	r := s.repo(m.Repo.ID)
	if r.identity == nil || !r.identity.IsDelegate(m.Delegate) {
		return
	}
	if r.want.DefaultBranch == "" {
		// Known only from delegates' refs (the creator's are not taken:
		// it is no longer a delegate): what they say of the repository.
		r.want.Name, r.want.Description, r.want.DefaultBranch = m.Repo.Name, m.Repo.Description, m.Repo.DefaultBranch
		r.want.Creator, r.want.RootCommit = m.Repo.Creator, m.Repo.RootCommit
	}
	dr := s.delegateRepo(r, m.Delegate)
	if m.Repo.Seq > dr.want.Seq {
		dr.want, dr.wantSigned = m.Repo, m.Signed
		dr.want.Creator = m.Delegate
		if dr.want.DefaultBranch == "" {
			dr.want.DefaultBranch = r.want.DefaultBranch
		}
	}
	s.reschedule(ctx)
}

// busy reports whether a fetch or a canonical write of r (the
// repository's syncRepo) runs or is about to.
func (s *syncer) busy(r *syncRepo) bool {
	if r.parent != nil {
		r = r.parent
	}
	if r.fetching != nil || r.starting || r.canonicalRunning {
		return true
	}
	for _, dr := range r.delegates {
		if dr.fetching != nil || dr.starting {
			return true
		}
	}
	return false
}

// scheduleDelegates starts fetches of delegates' refs that are behind.
func (s *syncer) scheduleDelegates(ctx actor.Context) {
	ids := make([]wire.RepoID, 0)
	for id, r := range s.repos {
		if len(r.delegates) > 0 && !r.want.Local {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b wire.RepoID) int { return slices.Compare(a[:], b[:]) })
	for _, id := range ids {
		r := s.repos[id]
		for _, d := range slices.SortedFunc(maps.Keys(r.delegates), func(a, b wire.NodeID) int { return slices.Compare([]byte(a.String()), []byte(b.String())) }) {
			if s.fetches >= s.cfg.MaxFetches {
				return
			}
			dr := r.delegates[d]
			if !s.busy(r) && dr.behind() && s.wanted(dr) && s.reachable(dr) && (dr.refused == 0 || dr.refused != dr.want.Seq) {
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
	if r.fetching != nil && r.fetching.Equal(pid) {
		return r
	}
	for _, dr := range r.delegates {
		if dr.fetching != nil && dr.fetching.Equal(pid) {
			return dr
		}
	}
	return nil
}

// refreshCanonical writes r's canonical refs again, now or, when a fetch
// runs, once it ended.
func (s *syncer) refreshCanonical(ctx actor.Context, r *syncRepo) {
	if r.parent != nil {
		r = r.parent
	}
	if r.identity == nil || r.want.Local || r.want.DefaultBranch == "" {
		return
	}
	if s.busy(r) {
		r.canonicalDue = true
		return
	}
	r.canonicalDue = false
	id := *r.identity
	states := map[wire.NodeID]map[string]string{}
	for _, d := range id.Delegates {
		switch dr := r.delegates[d]; {
		case d == id.Creator && len(r.mirror.Refs) > 0:
			states[d] = r.mirror.Refs
		case dr != nil && len(dr.mirror.Refs) > 0:
			states[d] = dr.mirror.Refs
		}
	}
	if len(states) == 0 {
		return
	}
	dir := persist.MirrorPath(s.cfg.Root, r.want.ID)
	branch, repo := r.want.DefaultBranch, r.want.ID
	r.canonicalRunning = true
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
		r.canonicalRunning = false
		if m != nil {
			err = m.Err
		}
		if err != nil {
			s.log.Warn("sync: canonical refs", "repo", repo, "err", err)
		} else {
			r.canonical = &m.Canonical
			if why, ok := m.Canonical.Undecided["refs/heads/"+branch]; ok {
				s.log.Warn("sync: no canonical default branch", "repo", repo, "branch", branch, "why", why)
			}
		}
		if r.canonicalDue {
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
	if r.behind() || r.canonicalRunning || r.canonicalDue {
		return true
	}
	for _, dr := range r.delegates {
		if dr.behind() {
			return true
		}
	}
	return false
}

// releaseWaiters answers the commands waiting for r's repository (repo
// sync --wait, clone) once it holds every signed state it wants.
func (s *syncer) releaseWaiters(ctx actor.Context, r *syncRepo, peer wire.NodeID) {
	if r.parent != nil {
		r = r.parent
	}
	if s.repoBehind(r) {
		return
	}
	for _, w := range r.waiters {
		w.cancel()
		if w.progress != nil {
			ctx.Send(w.progress, &Progress{Repo: r.want.ID, Phase: PhaseSynced, Peer: peer})
		}
		w.reply(true)
	}
	r.waiters = nil
}

// delegatesView is what views shows of r's delegates.
func (r *syncRepo) delegatesView(v *syncView) {
	if r.identity != nil {
		v.Identity = r.identity
	}
	for d, dr := range r.delegates {
		if v.DelegateRefs == nil {
			v.DelegateRefs = map[wire.NodeID]map[string]string{}
		}
		v.DelegateRefs[d] = dr.mirror.Refs
		if dr.lastError != "" && v.LastError == "" {
			v.LastError = "delegate " + d.String() + ": " + dr.lastError
		}
	}
	v.Canonical = r.canonical
}
