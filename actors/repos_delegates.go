package actors

import (
	"context"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// The repository commands about delegates: repo delegate add, remove and
// sign (gossip signs: it holds the key and the kept identity document),
// repo add --repo-id (a delegate's own working copy of another's
// repository), and what repo show says of delegates.

// RepoDelegates is what RepoView says of a repository's delegates.
type RepoDelegates struct {
	Version   uint64        `json:"version"` // of the identity document; 1: the creator alone
	Delegates []wire.NodeID `json:"delegates"`
	Threshold int           `json:"threshold"`
	// The other delegates' refs the mirror holds (the creator's are Refs
	// and MirrorRefs).
	Refs map[wire.NodeID]map[string]string `json:"refs,omitempty"`
	// The canonical refs a clone gets, and the refs that have none (why).
	Canonical map[string]string `json:"canonical,omitempty"`
	Undecided map[string]string `json:"undecided,omitempty"`
}

// delegatesOf is what v shows of the delegates sync knows of.
func delegatesOf(repo persist.Repo, sv syncView) *RepoDelegates {
	d := &RepoDelegates{Version: 1, Delegates: []wire.NodeID{repo.Creator}, Threshold: 1, Refs: sv.DelegateRefs}
	if id := sv.Identity; id != nil {
		d.Version, d.Delegates, d.Threshold = id.Version, id.Delegates, id.Threshold
	}
	if c := sv.Canonical; c != nil {
		d.Canonical, d.Undecided = c.Refs, c.Undecided
	}
	return d
}

// changeDelegates has gossip sign the next version of a document.
func (r *repos) changeDelegates(ctx actor.Context, m *ChangeDelegates) {
	reply := replier(ctx)
	if r.gossip == nil {
		reply(r.notRunning())
		return
	}
	askFor(ctx, r.store, &loadRepo{ID: m.ID}, func(st repoState, err error) {
		if err != nil {
			reply(unknownRepo(m.ID, err))
			return
		}
		askFor(ctx, r.gossip, &changeIdentity{Repo: st.Repo, Add: m.Add, Remove: m.Remove, Threshold: m.Threshold},
			func(res IdentityResult, err error) { reply(result(res, err)) })
	})
}

// signIdentityCmd has gossip add our signature to a proposal.
func (r *repos) signIdentityCmd(ctx actor.Context, m *SignIdentity) {
	reply := replier(ctx)
	if r.gossip == nil {
		reply(r.notRunning())
		return
	}
	doc, err := ParseProposal(m.Proposal)
	if err != nil {
		reply(err)
		return
	}
	if doc.GetRepoId() != m.ID.String() {
		reply(fmt.Errorf("the proposal is for %s, not %s", wire.SafeText(doc.GetRepoId()), m.ID))
		return
	}
	askFor(ctx, r.gossip, &signIdentity{Proposal: doc}, func(res IdentityResult, err error) { reply(result(res, err)) })
}

// addAsDelegate adds a working copy of a repository this node learned of
// (another created it) as this node's delegate copy: its refs are announced
// as this delegate's once the repository's document names this node.
func (r *repos) addAsDelegate(ctx actor.Context, m *AddRepo) {
	reply := replier(ctx)
	askFor(ctx, r.store, &loadRepo{ID: m.RepoID}, func(known repoState, err error) {
		if err != nil {
			reply(fmt.Errorf("%w; a delegate adds a repository this node has learned of: start the node and wait until `menode repo show --repo-id %s` finds it", unknownRepo(m.RepoID, err), m.RepoID))
			return
		}
		if known.Repo.Local {
			reply(fmt.Errorf("repository %s is already added (path %s)", m.RepoID, known.Repo.Path))
			return
		}
		root, creator := r.cfg.Root, known.Repo.Creator
		progress := func(*Progress) {}
		if m.Progress != nil {
			pid, sys := m.Progress, ctx.ActorSystem().Root
			progress = func(p *Progress) { sys.Send(pid, p) }
		}
		add := *m
		if add.Name == "" {
			add.Name = known.Repo.Name
		}
		if add.Description == "" {
			add.Description = known.Repo.Description
		}
		db := r.db
		work(ctx, r, func(wctx context.Context) (persist.Repo, error) {
			// The ID is derived from the working copy's root commit and the
			// creator: a copy of another repository gets another ID.
			repo, err := inspectRepo(wctx, root, db, &add, creator, progress)
			if err == nil && repo.ID != m.RepoID {
				err = fmt.Errorf("%s is not a copy of %s: its root commit %s is not the repository's root %s", persist.QuotePath(m.Path), m.RepoID, repo.RootCommit, known.Repo.RootCommit)
			}
			return repo, err
		}, func(repo persist.Repo, err error) {
			if err != nil {
				reply(err)
				return
			}
			repo.AddedAt, repo.Followed = known.Repo.AddedAt, known.Repo.Followed
			askFor(ctx, r.store, &insertRepo{Repo: repo, Replace: true}, func(st repoState, err error) {
				if err != nil {
					reply(err)
					return
				}
				r.log.Info("repository added as a delegate's copy", "id", st.Repo.ID, "path", st.Repo.Path, "creator", creator)
				if r.gossip == nil {
					reply(st.view())
					return
				}
				ctx.Send(r.sync, &repoChanged{Repo: st.Repo})
				ctx.Send(r.watcher, &watchRepo{Repo: st.Repo})
				askFor(ctx, r.gossip, &announceRepos{Repos: []persist.Repo{st.Repo}}, func(_ bool, err error) {
					if err != nil {
						r.log.Warn("announce the added repository", "repo", st.Repo.ID, "err", err)
					}
					reply(st.view())
				})
			})
		})
	})
}
