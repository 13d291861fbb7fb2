package actors

// The repos actor serves the CLI's repository commands: add, list, show,
// sync, clone, pull, follow, remove. The root actor forwards them here.
// Git and the disk are worked in goroutines (asyncFor) under a context
// cancelled when this actor stops, so no git process outlives the node;
// the store and sync actors are asked with messages.

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// repos is the repository-command actor. gossip, sync and watcher are nil
// offline (a CLI command answered in process).
type repos struct {
	cfg   Config
	key   ed25519.PrivateKey // nil offline without an identity
	id    wire.NodeID
	log   *slog.Logger
	store *actor.PID
	db    *persist.Store // read only, for the listing (see list); writes go to store

	gossip, sync, watcher *actor.PID

	lastSync map[wire.RepoID]syncView // sync's last answer (see views)

	runCtx context.Context // cancelled in Stopping: git work ends with the actor
	cancel context.CancelFunc
}

func (r *repos) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.runCtx, r.cancel = r.cfg.workContext()
	case *actor.Stopping:
		r.cancel()
	case *AddRepo:
		if m.RepoID != (wire.RepoID{}) {
			r.addAsDelegate(ctx, m)
			break
		}
		r.add(ctx, m)
	case *ChangeDelegates:
		r.changeDelegates(ctx, m)
	case *SignIdentity:
		r.signIdentityCmd(ctx, m)
	case *ListRepos:
		r.list(ctx, m)
	case *ShowRepo:
		r.replyLoaded(ctx, m.ID, replier(ctx))
	case *SyncRepo:
		r.requestSync(ctx, m)
	case *CloneRepo:
		r.clone(ctx, m)
	case *PullRepo:
		r.pull(ctx, m)
	case *FollowRepo:
		r.follow(ctx, m)
	case *RemoveRepo:
		r.remove(ctx, m)
	case *PublishRefs:
		r.publish(ctx, m)
	case *RecordClone:
		reply := replier(ctx)
		if !filepath.IsAbs(m.Path) {
			reply(fmt.Errorf("clone path %q is not absolute", m.Path))
			return
		}
		askFor(ctx, r.store, &addClone{ID: m.ID, Path: m.Path}, func(_ bool, err error) {
			if err != nil {
				reply(unknownRepo(m.ID, err))
				return
			}
			r.replyLoaded(ctx, m.ID, reply)
		})
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		r.log.Debug("repos: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// work runs blocking git or disk work for this actor: under a context that
// ends when the actor stops or after WorkTimeout, and then, back in the
// actor, then.
func work[T any](ctx actor.Context, r *repos, do func(context.Context) (T, error), then func(T, error)) {
	wctx, cancel := context.WithTimeout(r.runCtx, r.cfg.WorkTimeout)
	asyncFor(ctx, r.cfg.WorkTimeout, func() (T, error) {
		defer cancel()
		return do(wctx)
	}, then)
}

func (r *repos) notRunning() error { return NotRunningError(r.cfg.Root) }

func unknownRepo(id wire.RepoID, err error) error {
	if errors.Is(err, persist.ErrUnknownRepo) {
		return fmt.Errorf("%w %s; `menode repo list` shows the ones this node knows", persist.ErrUnknownRepo, id)
	}
	return err
}

// list replies with a page of the listing. It reads the store itself, in
// a goroutine on a read transaction of its own: the store actor's mailbox
// may hold a flood's worth of gossip's writes, and a user waiting for
// `repo list` must not wait behind them (bbolt's readers never wait for
// its writer). What gossip queued and the store did not commit yet shows
// a moment later.
func (r *repos) list(ctx actor.Context, m *ListRepos) {
	reply := replier(ctx)
	q := persist.RepoQuery{Filter: persist.RepoFilter(m.Filter), Offset: max(m.Offset, 0), Limit: max(m.Limit, 0)}
	work(ctx, r, func(context.Context) (persist.RepoPage, error) {
		page, err := r.db.ListRepoPage(q)
		// A page's records are spread over the store's file: let go of
		// the pages the read mapped (some 13 MiB of the resident set for
		// a page of 100 among 30,000 repositories; see store.flush).
		_ = r.db.DropMapped()
		return page, err
	}, func(page persist.RepoPage, err error) {
		if err != nil {
			reply(err)
			return
		}
		states := make([]repoState, len(page.Repos))
		for i, e := range page.Repos {
			states[i] = repoState{Repo: e.Repo, Mirror: mirrorState{Mirror: e.Mirror, OK: e.MirrorOK}}
		}
		r.views(ctx, states, func(vs []RepoView, err error) {
			if err != nil {
				reply(err)
				return
			}
			reply(RepoList{Repos: vs, Total: page.Total, Offset: q.Offset})
		})
	})
}

// replyLoaded reads repository id from the store and replies with its view.
func (r *repos) replyLoaded(ctx actor.Context, id wire.RepoID, reply func(any)) {
	askFor(ctx, r.store, &loadRepo{ID: id}, func(st repoState, err error) {
		if err != nil {
			reply(unknownRepo(id, err))
			return
		}
		r.replyView(ctx, st, reply)
	})
}

// replyView replies with the view of one repository state.
func (r *repos) replyView(ctx actor.Context, st repoState, reply func(any)) {
	r.views(ctx, []repoState{st}, func(vs []RepoView, err error) {
		if err != nil {
			reply(err)
			return
		}
		reply(vs[0])
	})
}

// add reads the working repository (in a goroutine: git is slow), derives
// its ID from the root commit and our key, and stores it.
func (r *repos) add(ctx actor.Context, m *AddRepo) {
	reply := replier(ctx)
	if r.key == nil {
		reply(fmt.Errorf("no identity in %s; run `menode auth init`", r.cfg.Root))
		return
	}
	if !filepath.IsAbs(m.Path) {
		reply(fmt.Errorf("repository path %q is not absolute", m.Path))
		return
	}
	if err := persist.RefPatterns(m.Publish).Check(); err != nil {
		reply(err)
		return
	}
	root, creator := r.cfg.Root, r.id
	// git's progress is read in the goroutine that runs it and sent from there.
	progress := func(*Progress) {}
	if m.Progress != nil {
		pid, sys := m.Progress, ctx.ActorSystem().Root
		progress = func(p *Progress) { sys.Send(pid, p) }
	}
	db := r.db
	work(ctx, r, func(wctx context.Context) (persist.Repo, error) {
		return inspectRepo(wctx, root, db, m, creator, progress)
	},
		func(repo persist.Repo, err error) {
			if err != nil {
				reply(err)
				return
			}
			askFor(ctx, r.store, &insertRepo{Repo: repo}, func(st repoState, err error) {
				if err != nil {
					reply(err)
					return
				}
				r.log.Info("repository added", "id", st.Repo.ID, "name", st.Repo.Name, "path", st.Repo.Path)
				if r.gossip == nil {
					reply(st.view())
					return
				}
				ctx.Send(r.watcher, &watchRepo{Repo: st.Repo})
				// Reply once gossip has signed the announcement and sent the
				// mirror's record to the store: a repository reported added
				// is one this node serves at once.
				askFor(ctx, r.gossip, &announceRepos{Repos: []persist.Repo{st.Repo}}, func(_ bool, err error) {
					if err != nil {
						r.log.Warn("announce the added repository", "repo", st.Repo.ID, "err", err)
					}
					reply(st.view())
				})
			})
		})
}

// inspectRepo runs git on the working repository and fetches it into the
// node's mirror, whose refs are the ones announced, telling progress how
// far it is (hashing, then mirroring with git's own progress); it blocks.
func inspectRepo(ctx context.Context, root string, db *persist.Store, m *AddRepo, creator wire.NodeID, progress func(*Progress)) (persist.Repo, error) {
	hashing := func(pct float64, step string) { progress(&Progress{Phase: PhaseHashing, Percent: pct, Step: step}) }
	g, err := persist.OpenGitRepo(ctx, m.Path)
	if err != nil {
		return persist.Repo{}, err
	}
	if err := g.CheckComplete(ctx); err != nil {
		return persist.Repo{}, err
	}
	// From here on the path is a repository: say how far we are.
	hashing(10, "finding the root commit")
	rootCommit, err := g.RootCommit(ctx)
	if err != nil {
		return persist.Repo{}, err
	}
	branch, err := g.DefaultBranch(ctx)
	if err != nil {
		return persist.Repo{}, err
	}
	id, err := wire.NewRepoID(rootCommit, creator)
	if err != nil {
		return persist.Repo{}, err
	}
	name := m.Name
	if name == "" {
		name = filepath.Base(g.Dir)
	}
	// What gossip would refuse to sign is refused here, with the reason.
	if err := wire.CheckRepoMeta(name, m.Description, branch); err != nil {
		return persist.Repo{}, err
	}
	hashing(60, "reading the branches and tags")
	refs, err := g.Refs(ctx)
	if err != nil {
		return persist.Repo{}, err
	}
	publish := persist.RefPatterns(m.Publish)
	if publish.IsDefault() {
		publish = nil
	}
	if refs, err = publishedRefs(refs, publish); err != nil {
		return persist.Repo{}, err
	}
	branch = publish.PublishedBranch(branch, refs)
	if err := checkAnnounceable(id, rootCommit, name, m.Description, branch, refs); err != nil {
		return persist.Repo{}, err
	}
	progress(&Progress{Repo: id, Phase: PhaseHashing, Percent: 100, Message: fmt.Sprintf("%d branches and tags", len(refs))})
	// Refused before its mirror is touched: fetching into the mirror of a
	// repository already added would bring in refs it does not publish.
	// A delegate's copy (m.RepoID set) replaces the record gossip made,
	// never one added here (as insertRepo with Replace).
	if old, err := db.Repo(id); err == nil && (m.RepoID == (wire.RepoID{}) || old.Local) {
		return persist.Repo{}, fmt.Errorf("repository %s is already added (path %s)", id, old.Path)
	}
	mirror, err := persist.InitMirror(ctx, persist.MirrorPath(root, id), branch)
	if err != nil {
		return persist.Repo{}, err
	}
	progress(&Progress{Repo: id, Phase: PhaseMirroring})
	var last persist.GitProgress
	mctx := persist.WithGitProgress(ctx, func(gp persist.GitProgress) {
		// A line per percent at most: git prints one per object counted.
		if gp.Title == last.Title && int(gp.Percent) == int(last.Percent) {
			return
		}
		last = gp
		progress(&Progress{Repo: id, Phase: PhaseMirroring, Percent: max(gp.Percent, 0), Step: gp.Title, Objects: gp.Done, ObjectsTotal: gp.Total})
	})
	if refs, branch, err = mirror.MirrorPublished(mctx, g.Dir, publish, branch); err != nil {
		return persist.Repo{}, err
	}
	progress(&Progress{Repo: id, Phase: PhaseMirroring, Percent: 100, Step: last.Title, Objects: last.Total, ObjectsTotal: last.Total})
	now := time.Now().UTC()
	return persist.Repo{
		ID: id, Name: name, Description: m.Description, Creator: creator,
		RootCommit: rootCommit, DefaultBranch: branch, Refs: refs, Local: true,
		Path: g.Dir, AddedAt: now, UpdatedAt: now, Publish: publish,
	}, nil
}

// checkAnnounceable refuses a repository whose announcement would not fit
// the announcement budget (very many refs), before anything is stored.
func checkAnnounceable(id wire.RepoID, rootCommit, name, description, branch string, refs map[string]string) error {
	if len(refs) > wire.MaxRefs {
		return fmt.Errorf("the repository has %d branches and tags; menode carries at most %d", len(refs), wire.MaxRefs)
	}
	body := &wire.RepoAnnouncement{RepoId: id.String(), RootCommit: rootCommit, Name: name, Description: description,
		DefaultBranch: branch, Refs: wire.RefsFromMap(refs)}
	// origin, seq, timestamp and signature take under 200 bytes.
	if size := proto.Size(body) + 256; size > wire.MaxAnnouncementSize {
		return fmt.Errorf("the repository's branch and tag names take %d KiB; an announcement carries at most %d KiB: remove some refs", size>>10, wire.MaxAnnouncementSize>>10)
	}
	return nil
}

// requestSync asks the sync actor for a sync, waiting if asked to, and
// replies with the repository as it is then.
func (r *repos) requestSync(ctx actor.Context, m *SyncRepo) {
	reply := replier(ctx)
	askFor(ctx, r.store, &loadRepo{ID: m.ID}, func(st repoState, err error) {
		if err != nil {
			reply(unknownRepo(m.ID, err))
			return
		}
		r.ensureSynced(ctx, st, m.Wait, m.Timeout, m.Progress, func(changed bool, err error) {
			if err != nil {
				reply(err)
				return
			}
			if !changed {
				r.replyView(ctx, st, reply)
				return
			}
			r.replyLoaded(ctx, m.ID, reply)
		})
	})
}

// ensureSynced runs then once the mirror of st holds the signed refs: at
// once (changed false) when it already does, else after sync says so
// (changed true: st is out of date), or with the error that kept it from
// it.
func (r *repos) ensureSynced(ctx actor.Context, st repoState, wait bool, timeout time.Duration, progress *actor.PID, then func(changed bool, err error)) {
	if st.Repo.Local || st.synced() {
		then(false, nil)
		return
	}
	if r.sync == nil {
		then(false, r.notRunning())
		return
	}
	if timeout <= 0 {
		timeout = DefaultSyncTimeout
	}
	msg := &syncNow{ID: st.Repo.ID, Wait: wait, Timeout: timeout, Progress: progress}
	askForWithin(ctx, r.sync, msg, timeout+askTimeout, func(_ any, err error) { then(true, err) })
}

// clone makes a working clone from the mirror, syncing first if needed.
func (r *repos) clone(ctx actor.Context, m *CloneRepo) {
	reply := replier(ctx)
	if !filepath.IsAbs(m.Output) {
		reply(fmt.Errorf("output path %q is not absolute", m.Output))
		return
	}
	work(ctx, r, func(context.Context) (struct{}, error) { return struct{}{}, checkEmptyDir(m.Output) }, func(_ struct{}, err error) {
		if err != nil {
			reply(err)
			return
		}
		// A clone follows its repository: its mirror is kept up to date
		// whatever the seeding policy.
		askFor(ctx, r.store, &setFollowed{ID: m.ID, Follow: true}, func(st repoState, err error) {
			if err != nil {
				reply(unknownRepo(m.ID, err))
				return
			}
			if r.sync != nil {
				ctx.Send(r.sync, &repoChanged{Repo: st.Repo})
			}
			r.ensureSynced(ctx, st, true, m.Timeout, m.Progress, func(_ bool, err error) {
				if err != nil {
					reply(err)
					return
				}
				r.cloneMirror(ctx, m, st, reply)
			})
		})
	})
}

// cloneMirror clones the synced mirror of st into m.Output and records the
// clone.
func (r *repos) cloneMirror(ctx actor.Context, m *CloneRepo, st repoState, reply func(any)) {
	// The branch the creator signed as default; a local repository's
	// mirror says which one its working repository has.
	branch := st.Repo.DefaultBranch
	if st.Repo.Local && st.Mirror.Mirror.DefaultBranch != "" {
		branch = st.Mirror.Mirror.DefaultBranch
	}
	if m.Progress != nil {
		ctx.Send(m.Progress, &Progress{Repo: m.ID, Phase: PhaseCloning})
	}
	mirror := persist.MirrorPath(r.cfg.Root, m.ID)
	work(ctx, r, func(wctx context.Context) (string, error) {
		if err := persist.CloneMirror(wctx, mirror, m.Output, "menode", branch, persist.RemoteURL(m.ID)); err != nil {
			return "", err
		}
		return persist.GitRepo{Dir: m.Output}.Head(wctx)
	}, func(head string, err error) {
		if err != nil {
			reply(err)
			return
		}
		askFor(ctx, r.store, &addClone{ID: m.ID, Path: m.Output}, func(_ bool, err error) {
			if err != nil {
				reply(err)
				return
			}
			r.log.Info("cloned", "repo", m.ID, "path", m.Output)
			reply(CloneResult{ID: m.ID, Path: m.Output, Branch: branch, Head: head})
		})
	})
}

// checkEmptyDir refuses an existing path that is not an empty directory.
func checkEmptyDir(path string) error {
	entries, err := os.ReadDir(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%s exists and is not an empty directory", path)
	case len(entries) > 0:
		return fmt.Errorf("%s exists and is not empty; clone into a new directory", path)
	}
	return nil
}

// pull syncs the mirror when it is behind, then pulls into the clone.
func (r *repos) pull(ctx actor.Context, m *PullRepo) {
	reply := replier(ctx)
	if !filepath.IsAbs(m.Path) {
		reply(fmt.Errorf("clone path %q is not absolute", m.Path))
		return
	}
	r.findOrAdoptClone(ctx, m.Path, func(st repoState, err error) {
		if err != nil {
			if errors.Is(err, persist.ErrUnknownRepo) {
				err = fmt.Errorf("%s is not a clone made by `menode repo clone` or `git clone menode::…` (no remote with a menode URL); clone the repository first", m.Path)
			}
			reply(err)
			return
		}
		id := st.Repo.ID
		if m.ID != (wire.RepoID{}) && m.ID != id {
			reply(fmt.Errorf("%s is a clone of %s, not of %s", m.Path, id, m.ID))
			return
		}
		pull := func() {
			if m.Progress != nil {
				ctx.Send(m.Progress, &Progress{Repo: id, Phase: PhaseCloning})
			}
			mirror := persist.MirrorPath(r.cfg.Root, id)
			work(ctx, r, func(wctx context.Context) (PullResult, error) {
				g := persist.GitRepo{Dir: m.Path}
				before, err := g.Head(wctx)
				if err != nil {
					return PullResult{}, err
				}
				branch, err := g.CurrentBranch(wctx)
				if err != nil {
					return PullResult{}, err
				}
				after, err := g.PullFrom(wctx, id, mirror, m.Mode)
				if err != nil {
					return PullResult{}, err
				}
				return PullResult{ID: id, Path: m.Path, Branch: branch, Before: before, After: after}, nil
			}, func(res PullResult, err error) {
				if err != nil {
					reply(err)
					return
				}
				reply(res)
			})
		}
		if r.sync == nil {
			// Offline, the mirror is what it is: pull what it holds.
			pull()
			return
		}
		r.ensureSynced(ctx, st, true, m.Timeout, m.Progress, func(_ bool, err error) {
			if err != nil {
				reply(err)
				return
			}
			pull()
		})
	})
}

// findOrAdoptClone finds the repository the clone at path was made of: a
// recorded clone (repo clone), or else one whose remote has a menode URL
// (git clone menode::…), which is then recorded, so that list and show
// know it too.
func (r *repos) findOrAdoptClone(ctx actor.Context, path string, then func(repoState, error)) {
	askFor(ctx, r.store, &findClone{Path: path}, func(st repoState, err error) {
		if !errors.Is(err, persist.ErrUnknownRepo) {
			then(st, err)
			return
		}
		work(ctx, r, func(wctx context.Context) (wire.RepoID, error) { return persist.CloneOf(wctx, path) }, func(id wire.RepoID, cerr error) {
			if cerr != nil {
				then(repoState{}, err)
				return
			}
			askFor(ctx, r.store, &addClone{ID: id, Path: path}, func(_ bool, err error) {
				if errors.Is(err, persist.ErrUnknownRepo) {
					err = fmt.Errorf("%s is a clone of %s, which this node does not know; `menode repo list` shows the ones it knows", path, id)
				}
				if err != nil {
					then(repoState{}, err)
					return
				}
				askFor(ctx, r.store, &findClone{Path: path}, then)
			})
		})
	})
}

// views turns repository states into what the CLI shows: sync's progress
// and seeders, the mirror's size, and whether a clone is behind. Git and
// the disk are read in a goroutine.
func (r *repos) views(ctx actor.Context, states []repoState, then func([]RepoView, error)) {
	withSync := func(syncs map[wire.RepoID]syncView) {
		root := r.cfg.Root
		work(ctx, r, func(wctx context.Context) ([]RepoView, error) {
			out := make([]RepoView, 0, len(states))
			for _, st := range states {
				v := st.view()
				if sv, ok := syncs[st.Repo.ID]; ok {
					v.Seeders, v.SyncError = sv.Seeders, sv.LastError
					v.Delegates = delegatesOf(st.Repo, sv)
					if sv.Syncing {
						v.Status, v.Received = StatusSyncing, sv.Bytes
						v.Phase, v.PhasePercent, v.Step = sv.Phase, sv.Percent, sv.Step
						if sv.Size > 0 {
							v.Percent = float64(sv.Bytes) * 100 / float64(sv.Size)
						}
					}
				}
				if v.Seeders == nil {
					v.Seeders = []wire.NodeID{}
				}
				v.Size, _ = persist.DiskSize(persist.MirrorPath(root, st.Repo.ID))
				v.HasUpdates = clonesBehind(wctx, st)
				v.Clones = persist.ExistingClones(v.Clones) // deleted ones are not shown
				if err := wctx.Err(); err != nil {
					// Cut short: has_updates would be a guess.
					return nil, fmt.Errorf("repository views: %w", err)
				}
				out = append(out, v)
			}
			return out, nil
		}, then)
	}
	if r.sync == nil {
		withSync(nil)
		return
	}
	// Sync may be busy (a flood of announcements in its mailbox): wait
	// for it as long as status waits, then show what it said last.
	ids := make([]wire.RepoID, 0, len(states)) // of this page only: not a view of every repository known
	for _, st := range states {
		ids = append(ids, st.Repo.ID)
	}
	askForWithin(ctx, r.sync, &syncStates{IDs: ids}, r.cfg.StatusWait, func(syncs map[wire.RepoID]syncView, err error) {
		if err != nil {
			r.log.Debug("repos: sync states from before", "err", err)
			syncs = r.lastSync
		}
		r.lastSync = syncs
		withSync(syncs)
	})
}

// clonesBehind reports whether a recorded clone's remote-tracking branches
// differ from the mirror's branches. It runs git; it blocks.
func clonesBehind(ctx context.Context, st repoState) bool {
	if !st.Mirror.OK || len(st.Repo.Clones) == 0 {
		return false
	}
	for _, path := range st.Repo.Clones {
		remote, err := persist.CloneRemoteRefs(ctx, path, st.Repo.ID)
		if err != nil {
			continue // moved or deleted: nothing to say
		}
		for name, id := range st.Mirror.Mirror.Refs {
			if strings.HasPrefix(name, "refs/heads/") && name != "refs/heads/" && remote[name] != id {
				return true
			}
		}
	}
	return false
}

// follow marks a repository followed or not and tells sync.
func (r *repos) follow(ctx actor.Context, m *FollowRepo) {
	reply := replier(ctx)
	askFor(ctx, r.store, &setFollowed{ID: m.ID, Follow: m.Follow}, func(st repoState, err error) {
		if err != nil {
			reply(unknownRepo(m.ID, err))
			return
		}
		if r.sync != nil {
			ctx.Send(r.sync, &repoChanged{Repo: st.Repo})
		}
		r.replyView(ctx, st, reply)
	})
}

// remove forgets a repository in the store and the actors, then deletes
// its mirror, cached bundles and half-received bundle.
func (r *repos) remove(ctx actor.Context, m *RemoveRepo) {
	reply := replier(ctx)
	askFor(ctx, r.store, &deleteRepo{ID: m.ID}, func(st repoState, err error) {
		if err != nil {
			reply(unknownRepo(m.ID, err))
			return
		}
		if r.sync != nil {
			ctx.Send(r.sync, &repoRemoved{ID: m.ID})
			ctx.Send(r.gossip, &mirrorRemoved{ID: m.ID})
			if st.Repo.Local {
				ctx.Send(r.watcher, &unwatchRepo{ID: m.ID})
			}
		}
		root := r.cfg.Root
		work(ctx, r, func(context.Context) (RemoveResult, error) {
			var freed int64
			swarm := persist.SwarmPartPath(root, m.ID) // a swarm fetch's pieces (transfer_swarm.go)
			paths := []string{persist.MirrorPath(root, m.ID), persist.PartPath(root, m.ID), swarm, swarm + ".pieces"}
			cached, _ := persist.CachedBundles(root, m.ID)
			for _, p := range append(paths, cached...) {
				size, _ := persist.DiskSize(p)
				if err := os.RemoveAll(p); err != nil {
					return RemoveResult{}, fmt.Errorf("remove %s: %w", persist.QuotePath(p), err)
				}
				freed += size
			}
			return RemoveResult{ID: m.ID, Freed: freed}, nil
		}, func(res RemoveResult, err error) {
			if err != nil {
				reply(err)
				return
			}
			r.log.Info("repository removed", "repo", m.ID, "freed", res.Freed)
			reply(res)
		})
	})
}

func (r repoState) view() RepoView {
	v := RepoView{
		ID: r.Repo.ID, Name: r.Repo.Name, Description: r.Repo.Description,
		Creator: r.Repo.Creator, Local: r.Repo.Local, Path: r.Repo.Path,
		Refs: r.Repo.Refs, DefaultBranch: r.Repo.DefaultBranch,
		RootCommit: r.Repo.RootCommit, Seq: r.Repo.Seq, UpdatedAt: r.Repo.UpdatedAt,
		MirrorRefs: r.Mirror.Mirror.Refs, Seeders: []wire.NodeID{}, Clones: r.Repo.Clones,
		Published: published(r.Repo),
	}
	if v.Refs == nil {
		v.Refs = map[string]string{}
	}
	if v.MirrorRefs == nil {
		v.MirrorRefs = map[string]string{}
	}
	if v.Clones == nil {
		v.Clones = []string{}
	}
	v.Followed = r.Repo.Followed
	switch {
	case r.Repo.Local:
		v.Status = StatusLocal
	case r.Repo.Removed:
		v.Status = StatusRemoved
	case !r.Mirror.OK || len(r.Mirror.Mirror.Refs) == 0:
		v.Status = StatusMissing
	case r.synced():
		v.Status = StatusSynced
	default:
		v.Status = StatusBehind
	}
	return v
}

// synced reports whether the mirror holds exactly the signed refs.
func (r repoState) synced() bool {
	return r.Mirror.OK && len(r.Repo.Refs) > 0 && maps.Equal(r.Mirror.Mirror.Refs, r.Repo.Refs)
}
