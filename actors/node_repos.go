package actors

// The node's repository commands: add, sync, clone, pull, and the views
// that list and show repositories. Git runs in goroutines (async); the
// store and sync actors are asked with messages.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// ErrNotRunning is returned for a command that needs the network when no
// node runs on the root.
var ErrNotRunning = errors.New("no node is running")

func (n *node) notRunning() error {
	return NotRunningError(n.cfg.Root)
}

func unknownRepo(id wire.RepoID, err error) error {
	if errors.Is(err, persist.ErrUnknownRepo) {
		return fmt.Errorf("%w %s; `menode repo list` shows the ones this node knows", persist.ErrUnknownRepo, id)
	}
	return err
}

// addRepo reads the working repository (in a goroutine: git is slow), derives
// its ID from the root commit and our key, and stores it.
func (n *node) addRepo(ctx actor.Context, m *AddRepo) {
	reply := replier(ctx)
	if n.key == nil {
		reply(fmt.Errorf("no identity in %s; run `menode auth init`", n.cfg.Root))
		return
	}
	if !filepath.IsAbs(m.Path) {
		reply(fmt.Errorf("repository path %q is not absolute", m.Path))
		return
	}
	creator := n.id
	root := n.cfg.Root
	async(ctx, func() (any, error) { return inspectRepo(root, m, creator) }, func(res any, err error) {
		if err != nil {
			reply(err)
			return
		}
		ask(ctx, n.store, insertRepo{Repo: res.(persist.Repo)}, func(res any, err error) {
			if err != nil {
				reply(err)
				return
			}
			r := res.(repoState)
			n.log.Info("repository added", "id", r.Repo.ID, "name", r.Repo.Name, "path", r.Repo.Path)
			if n.gossip != nil {
				ctx.Send(n.gossip, &announceRepos{Repos: []persist.Repo{r.Repo}})
				ctx.Send(n.watcher, &watchRepo{Repo: r.Repo})
			}
			reply(r.view())
		})
	})
}

// inspectRepo runs git on the working repository and fetches it into the
// node's mirror, whose refs are the ones announced; it blocks.
func inspectRepo(root string, m *AddRepo, creator wire.NodeID) (persist.Repo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), workTimeout)
	defer cancel()
	g, err := persist.OpenGitRepo(ctx, m.Path)
	if err != nil {
		return persist.Repo{}, err
	}
	if err := g.CheckComplete(ctx); err != nil {
		return persist.Repo{}, err
	}
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
	refs, err := g.Refs(ctx)
	if err != nil {
		return persist.Repo{}, err
	}
	if err := checkAnnounceable(id, rootCommit, name, m.Description, branch, refs); err != nil {
		return persist.Repo{}, err
	}
	mirror, err := persist.InitMirror(ctx, persist.MirrorPath(root, id), branch)
	if err != nil {
		return persist.Repo{}, err
	}
	if refs, err = mirror.MirrorFrom(ctx, g.Dir); err != nil {
		return persist.Repo{}, err
	}
	now := time.Now().UTC()
	return persist.Repo{
		ID: id, Name: name, Description: m.Description, Creator: creator,
		RootCommit: rootCommit, DefaultBranch: branch, Refs: refs, Local: true,
		Path: g.Dir, AddedAt: now, UpdatedAt: now,
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

// syncRepo asks the sync actor for a sync, waiting if asked to.
func (n *node) syncRepo(ctx actor.Context, m *SyncRepo) {
	reply := replier(ctx)
	n.ensureSynced(ctx, m.ID, m.Wait, m.Timeout, m.Progress, func(err error) {
		if err != nil {
			reply(err)
			return
		}
		ask(ctx, n.store, loadRepo{ID: m.ID}, func(res any, err error) {
			if err != nil {
				reply(unknownRepo(m.ID, err))
				return
			}
			n.views(ctx, []repoState{res.(repoState)}, func(vs []RepoView) { reply(vs[0]) })
		})
	})
}

// ensureSynced runs then once the mirror of id holds the signed refs (at
// once when it does), or with the error that kept it from it.
func (n *node) ensureSynced(ctx actor.Context, id wire.RepoID, wait bool, timeout time.Duration, progress *actor.PID, then func(error)) {
	ask(ctx, n.store, loadRepo{ID: id}, func(res any, err error) {
		if err != nil {
			then(unknownRepo(id, err))
			return
		}
		st := res.(repoState)
		if st.Repo.Local || st.synced() {
			then(nil)
			return
		}
		if n.sync == nil {
			then(n.notRunning())
			return
		}
		if timeout <= 0 {
			timeout = DefaultSyncTimeout
		}
		msg := &syncNow{ID: id, Wait: wait, Timeout: timeout, Progress: progress}
		askWithin(ctx, n.sync, msg, timeout+askTimeout, func(_ any, err error) { then(err) })
	})
}

// cloneRepo makes a working clone from the mirror, syncing first if needed.
func (n *node) cloneRepo(ctx actor.Context, m *CloneRepo) {
	reply := replier(ctx)
	if !filepath.IsAbs(m.Output) {
		reply(fmt.Errorf("output path %q is not absolute", m.Output))
		return
	}
	if err := checkEmptyDir(m.Output); err != nil {
		reply(err)
		return
	}
	// A clone follows its repository: its mirror is kept up to date
	// whatever the seeding policy.
	ask(ctx, n.store, followRepo{ID: m.ID, Follow: true}, func(res any, err error) {
		if err != nil {
			reply(unknownRepo(m.ID, err))
			return
		}
		if n.sync != nil {
			ctx.Send(n.sync, &repoChanged{Repo: res.(repoState).Repo})
		}
		n.cloneSynced(ctx, m, reply)
	})
}

// cloneSynced clones once the mirror is synced.
func (n *node) cloneSynced(ctx actor.Context, m *CloneRepo, reply func(any)) {
	n.ensureSynced(ctx, m.ID, true, m.Timeout, m.Progress, func(err error) {
		if err != nil {
			reply(err)
			return
		}
		ask(ctx, n.store, loadRepo{ID: m.ID}, func(res any, err error) {
			if err != nil {
				reply(unknownRepo(m.ID, err))
				return
			}
			st := res.(repoState)
			branch := st.Mirror.Mirror.DefaultBranch
			if branch == "" {
				branch = st.Repo.DefaultBranch
			}
			if m.Progress != nil {
				ctx.Send(m.Progress, &Progress{Repo: m.ID, Phase: PhaseCloning})
			}
			mirror := persist.MirrorPath(n.cfg.Root, m.ID)
			async(ctx, func() (any, error) {
				wctx, cancel := context.WithTimeout(context.Background(), workTimeout)
				defer cancel()
				if err := persist.CloneMirror(wctx, mirror, m.Output, "menode", branch, persist.RemoteURL(m.ID)); err != nil {
					return nil, err
				}
				return persist.GitRepo{Dir: m.Output}.Head(wctx)
			}, func(head any, err error) {
				if err != nil {
					reply(err)
					return
				}
				ask(ctx, n.store, addClone{ID: m.ID, Path: m.Output}, func(_ any, err error) {
					if err != nil {
						reply(err)
						return
					}
					n.log.Info("cloned", "repo", m.ID, "path", m.Output)
					reply(CloneResult{ID: m.ID, Path: m.Output, Branch: branch, Head: head.(string)})
				})
			})
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

// pullRepo syncs the mirror when it is behind, then pulls into the clone.
func (n *node) pullRepo(ctx actor.Context, m *PullRepo) {
	reply := replier(ctx)
	if !filepath.IsAbs(m.Path) {
		reply(fmt.Errorf("clone path %q is not absolute", m.Path))
		return
	}
	n.findOrAdoptClone(ctx, m.Path, func(res any, err error) {
		if err != nil {
			if errors.Is(err, persist.ErrUnknownRepo) {
				err = fmt.Errorf("%s is not a clone made by `menode repo clone` or `git clone menode::…` (no remote with a menode URL); clone the repository first", m.Path)
			}
			reply(err)
			return
		}
		st := res.(repoState)
		id := st.Repo.ID
		if m.ID != (wire.RepoID{}) && m.ID != id {
			reply(fmt.Errorf("%s is a clone of %s, not of %s", m.Path, id, m.ID))
			return
		}
		root := n.cfg.Root
		pull := func() {
			if m.Progress != nil {
				ctx.Send(m.Progress, &Progress{Repo: id, Phase: PhaseCloning})
			}
			async(ctx, func() (any, error) {
				wctx, cancel := context.WithTimeout(context.Background(), workTimeout)
				defer cancel()
				g := persist.GitRepo{Dir: m.Path}
				before, err := g.Head(wctx)
				if err != nil {
					return nil, err
				}
				branch, err := g.CurrentBranch(wctx)
				if err != nil {
					return nil, err
				}
				after, err := g.PullFrom(wctx, id, persist.MirrorPath(root, id), m.Mode)
				if err != nil {
					return nil, err
				}
				return PullResult{ID: id, Path: m.Path, Branch: branch, Before: before, After: after}, nil
			}, func(res any, err error) {
				if err != nil {
					reply(err)
					return
				}
				reply(res)
			})
		}
		if st.Repo.Local || st.synced() || n.sync == nil {
			// Offline, the mirror is what it is: pull what it holds.
			pull()
			return
		}
		n.ensureSynced(ctx, id, true, m.Timeout, m.Progress, func(err error) {
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
// know it too. Reply as findClone's.
func (n *node) findOrAdoptClone(ctx actor.Context, path string, then func(any, error)) {
	ask(ctx, n.store, findClone{Path: path}, func(res any, err error) {
		if !errors.Is(err, persist.ErrUnknownRepo) {
			then(res, err)
			return
		}
		async(ctx, func() (any, error) {
			gctx, cancel := context.WithTimeout(context.Background(), askTimeout)
			defer cancel()
			return persist.CloneOf(gctx, path)
		}, func(id any, cerr error) {
			if cerr != nil {
				then(nil, err)
				return
			}
			ask(ctx, n.store, addClone{ID: id.(wire.RepoID), Path: path}, func(_ any, err error) {
				if errors.Is(err, persist.ErrUnknownRepo) {
					err = fmt.Errorf("%s is a clone of %s, which this node does not know; `menode repo list` shows the ones it knows", path, id)
				}
				if err != nil {
					then(nil, err)
					return
				}
				ask(ctx, n.store, findClone{Path: path}, then)
			})
		})
	})
}

// views turns repository states into what the CLI shows: sync's progress
// and seeders, the mirror's size, and whether a clone is behind. Git and
// the disk are read in a goroutine.
func (n *node) views(ctx actor.Context, states []repoState, then func([]RepoView)) {
	withSync := func(syncs map[wire.RepoID]syncView) {
		root := n.cfg.Root
		async(ctx, func() (any, error) {
			out := make([]RepoView, 0, len(states))
			for _, st := range states {
				v := st.view()
				if sv, ok := syncs[st.Repo.ID]; ok {
					v.Seeders, v.SyncError = sv.Seeders, sv.LastError
					if sv.Syncing {
						v.Status, v.Received = StatusSyncing, sv.Bytes
						if sv.Size > 0 {
							v.Percent = float64(sv.Bytes) * 100 / float64(sv.Size)
						}
					}
				}
				if v.Seeders == nil {
					v.Seeders = []wire.NodeID{}
				}
				mirror := persist.MirrorPath(root, st.Repo.ID)
				v.Size, _ = persist.DiskSize(mirror)
				v.HasUpdates = clonesBehind(st)
				v.Clones = persist.ExistingClones(v.Clones) // deleted ones are not shown
				out = append(out, v)
			}
			return out, nil
		}, func(res any, err error) {
			if err != nil {
				then(nil)
				return
			}
			then(res.([]RepoView))
		})
	}
	if n.sync == nil {
		withSync(nil)
		return
	}
	ask(ctx, n.sync, &syncStates{}, func(res any, err error) {
		syncs, _ := res.(map[wire.RepoID]syncView)
		withSync(syncs)
	})
}

// clonesBehind reports whether a recorded clone's remote-tracking branches
// differ from the mirror's branches. It runs git; it blocks.
func clonesBehind(st repoState) bool {
	if !st.Mirror.OK || len(st.Repo.Clones) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, path := range st.Repo.Clones {
		remote, err := persist.CloneRemoteRefs(ctx, path, st.Repo.ID)
		if err != nil {
			continue // moved or deleted: nothing to say
		}
		for name, id := range st.Mirror.Mirror.Refs {
			if len(name) > len("refs/heads/") && name[:len("refs/heads/")] == "refs/heads/" && remote[name] != id {
				return true
			}
		}
	}
	return false
}

// followRepo marks a repository followed or not and tells sync.
func (n *node) followRepo(ctx actor.Context, m *FollowRepo) {
	reply := replier(ctx)
	ask(ctx, n.store, followRepo{ID: m.ID, Follow: m.Follow}, func(res any, err error) {
		if err != nil {
			reply(unknownRepo(m.ID, err))
			return
		}
		st := res.(repoState)
		if n.sync != nil {
			ctx.Send(n.sync, &repoChanged{Repo: st.Repo})
		}
		n.views(ctx, []repoState{st}, func(vs []RepoView) { reply(vs[0]) })
	})
}

// removeRepo forgets a repository in the store and the actors, then deletes
// its mirror, cached bundles and half-received bundle.
func (n *node) removeRepo(ctx actor.Context, m *RemoveRepo) {
	reply := replier(ctx)
	ask(ctx, n.store, removeRepo{ID: m.ID}, func(res any, err error) {
		if err != nil {
			reply(unknownRepo(m.ID, err))
			return
		}
		st := res.(repoState)
		if n.sync != nil {
			ctx.Send(n.sync, &repoRemoved{ID: m.ID})
			ctx.Send(n.gossip, &mirrorRemoved{ID: m.ID})
			if st.Repo.Local {
				ctx.Send(n.watcher, &unwatchRepo{ID: m.ID})
			}
		}
		root := n.cfg.Root
		async(ctx, func() (any, error) {
			var freed int64
			paths := []string{persist.MirrorPath(root, m.ID), partPath(root, m.ID)}
			cached, _ := filepath.Glob(filepath.Join(root, "cache", m.ID.String()+"-*.bundle"))
			for _, p := range append(paths, cached...) {
				size, _ := persist.DiskSize(p)
				if err := os.RemoveAll(p); err != nil {
					return nil, fmt.Errorf("remove %s: %w", persist.QuotePath(p), err)
				}
				freed += size
			}
			return RemoveResult{ID: m.ID, Freed: freed}, nil
		}, func(res any, err error) {
			if err != nil {
				reply(err)
				return
			}
			n.log.Info("repository removed", "repo", m.ID, "freed", res.(RemoveResult).Freed)
			reply(res)
		})
	})
}
